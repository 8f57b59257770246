"""The preprocess step end to end: the sample's answer key, determinism, S3, bad inputs, noise hook."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from finegrain import storage
from finegrain.config import load_config
from finegrain.steps import preprocess


def _cfg(layout: str = "hecto", **pp):
    cfg = load_config("configs/sample.yaml", [f"data.layout={layout}"])
    for k, v in pp.items():
        setattr(cfg.preprocess, k, v)
    return cfg


@pytest.fixture(scope="module")
def sample_run(sample_dir: Path, tmp_path_factory) -> tuple[Path, pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp("prep")
    preprocess.run(_cfg(workers=2), str(sample_dir), str(out))
    key = json.loads((sample_dir / "answer_key.json").read_text("utf-8"))
    return out, pd.read_parquet(out / "manifest.parquet"), key


def _by_rel(manifest: pd.DataFrame, root: Path) -> dict[str, pd.Series]:
    return {Path(p).relative_to(root).as_posix(): row for p, row in zip(manifest.path, manifest.itertuples())}


def test_answer_key_found_without_false_merges(sample_run, sample_dir: Path) -> None:
    out, manifest, key = sample_run
    rows = _by_rel(manifest, sample_dir)
    assert len(manifest) == key["counts"]["train_files"] + key["counts"]["test_files"]  # nothing lost

    def same_group(paths):
        groups = {rows[p].dup_group for p in paths}
        return len(groups) == 1 and -1 not in groups

    for group in key["exact_duplicates"]:
        assert same_group(group) and sorted(rows[p].status for p in group).count("ok") == 1
    for near in key["near_duplicates"]:
        assert same_group([near["original"], near["copy"]]), near
        assert {rows[near["original"]].status, rows[near["copy"]].status} == {"ok", "near_duplicate"}
    for a, b in key["cross_class_duplicates"]:
        assert same_group([a, b]) and rows[a].status == rows[b].status == "cross_class_conflict"
    for a, b in key["alias_duplicates"]:
        assert same_group([a, b]) and {rows[a].status, rows[b].status} == {"ok", "duplicate"}
    for a, b in key["distinct_lookalikes"]:
        assert rows[a].dup_group == -1 or rows[a].dup_group != rows[b].dup_group, (a, b)
    for bad in key["corrupt"]:
        assert rows[bad["path"]].status == "corrupt" and rows[bad["path"]].reason
    # Every group is one planted problem: no extra merges anywhere.
    planted = len(key["exact_duplicates"]) + len(key["near_duplicates"]) + len(key["cross_class_duplicates"]) + len(
        key["alias_duplicates"]
    )
    assert manifest.dup_group.max() + 1 == planted


def test_manifest_contract_and_folds(sample_run, sample_dir: Path) -> None:
    out, manifest, key = sample_run
    assert list(manifest.columns[:13]) == ["image_id", "path", "split", "label", "class_name", "class_index",
                                            "sha256", "phash", "dup_group", "fold_group", "fold", "status",
                                            "reason"]  # fmt: skip
    # Every duplicate group lies inside one fold group (the sample plants no same_fold kind: they are equal).
    assert (manifest[manifest.dup_group >= 0].groupby("dup_group").fold_group.nunique() == 1).all()
    assert ((manifest.dup_group >= 0) <= (manifest.fold_group >= 0)).all()
    ok = manifest[manifest.status != "corrupt"]
    assert ok.phash.str.fullmatch(r"[0-9a-f]{16}").all()
    classes = json.loads((out / "classes.json").read_text("utf-8"))
    assert classes["aliases"] == key["aliases"] and len(classes["submission_columns"]) == 16
    assert len(classes["classes"]) == 15 and classes["test_ids"] == sorted(key["test_labels"])
    train = manifest[manifest.split == "train"]
    assert (train[train.status != "ok"].fold == -1).all() and (manifest[manifest.split == "test"].fold == -1).all()
    assert (train[train.status == "ok"].fold >= 0).all()
    for _, g in manifest[manifest.fold_group >= 0].groupby("fold_group"):
        assert g.fold[g.fold >= 0].nunique() <= 1
    used = train[train.fold >= 0]
    counts = pd.crosstab(used.class_name, used.fold)
    assert ((counts.sub(counts.mean(axis=1), axis=0)).abs() < 1.0).all().all()
    report = (out / "report.md").read_text("utf-8")
    for section in ("Status counts", "Duplicate groups", "Copies by kind", "Cross-class conflicts", "Corrupt files",
                    "Fold balance"):
        assert section in report
    assert (out / "config.yaml").exists()


def test_reports_show_relative_paths_and_pictures_of_what_they_name(sample_run, sample_dir: Path) -> None:
    """report.md (the KFP UI's summary) and report.html (the full page) never show where this machine keeps
    the data; the page has a thumbnail of every duplicate-group image and a box for every corrupt file."""
    out, manifest, key = sample_run
    report, page = (out / "report.md").read_text("utf-8"), (out / "report.html").read_text("utf-8")
    root = str(sample_dir.resolve())
    assert root not in report and root not in page
    assert "report.html" in report and "<svg" in page  # the summary points at the page; class histogram
    assert "class='fg-table'" in page and "<script>" in page  # sortable, filterable class table
    grouped = manifest[manifest.dup_group >= 0]
    shown = page.count("data:image/jpeg;base64,")
    assert len(grouped) and shown >= grouped.path.nunique()
    for item in key["corrupt"]:
        rel = item["path"] if isinstance(item, dict) else item
        assert f"title='{rel}" in page or f">{Path(rel).name}<" in page, rel
    for a, b in key["cross_class_duplicates"]:
        assert Path(a).name in page and Path(b).name in page


def test_rerun_is_byte_identical(sample_run, sample_dir: Path, tmp_path: Path) -> None:
    out, _, _ = sample_run
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_dir.rglob("*") if p.is_file()}
    preprocess.run(_cfg(workers=1), str(sample_dir), str(tmp_path))  # other worker count, same result
    assert (tmp_path / "manifest.parquet").read_bytes() == (out / "manifest.parquet").read_bytes()
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sample_dir.rglob("*") if p.is_file()}
    assert before == after  # source untouched


def _png(mode_img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    mode_img.save(buf, fmt)
    return buf.getvalue()


def _imagefolder(root: Path, bad_test: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(4):
            img = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
            (root / "train" / c).mkdir(parents=True, exist_ok=True)
            (root / "train" / c / f"{c}{i}.jpg").write_bytes(_png(img, "JPEG"))
    (root / "train" / "a" / "empty.jpg").write_bytes(b"")
    (root / "train" / "b" / "text.png").write_bytes(b"not an image at all")
    (root / "train" / "b" / "gray.png").write_bytes(_png(Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8))))
    (root / "test").mkdir()
    (root / "test" / "t1.jpg").write_bytes(_png(Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)), "JPEG"))
    if bad_test:
        (root / "test" / "t2.jpg").write_bytes(b"\xff\xd8\xff broken")
        (root / "test" / "t3.jpg").write_bytes(b"")
    return root


def test_bad_inputs_kept_with_reasons(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "data")
    summary = preprocess.run(_cfg("auto", workers=1), str(data), str(tmp_path / "out"))
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(manifest) == 12 and summary["status"]["corrupt"] == 2
    reasons = dict(zip(manifest.image_id, manifest.reason))
    assert "empty" in reasons["train/a/empty"] and "not an image" in reasons["train/b/text"]
    gray = manifest[manifest.image_id == "train/b/gray"].iloc[0]
    assert gray.status == "ok" and "grayscale" in gray.reason and gray.fold >= 0
    assert (data / "train" / "a" / "empty.jpg").exists()


def test_bad_test_image_aborts_naming_all(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "data", bad_test=True)
    with pytest.raises(preprocess.BadTestImagesError) as err:
        preprocess.run(_cfg("auto", workers=1), str(data), str(tmp_path / "out"))
    assert "t2" in str(err.value) and "t3" in str(err.value) and "2 test image" in str(err.value)


def test_s3_input_and_output(s3_bucket: str, tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "data")
    storage.upload_dir(data, f"{s3_bucket}/data")
    summary = preprocess.run(_cfg("auto", workers=2), f"{s3_bucket}/data", f"{s3_bucket}/prep")
    assert summary["images"] == 12
    with storage.local_path(f"{s3_bucket}/prep/manifest.parquet") as p:
        manifest = pd.read_parquet(p)
    assert manifest.path.str.startswith(s3_bucket).all() and (manifest.status == "corrupt").sum() == 2
    assert storage.exists(f"{s3_bucket}/prep/classes.json") and storage.exists(f"{s3_bucket}/prep/report.md")


def test_noise_hook_flags_contradicted_labels(sample_run, sample_dir: Path, tmp_path: Path) -> None:
    out, manifest, _ = sample_run
    classes = json.loads((out / "classes.json").read_text("utf-8"))["classes"]
    train = manifest[(manifest.split == "train") & (manifest.status == "ok")]
    probs = np.full((len(train), len(classes)), 0.01)
    probs[np.arange(len(train)), train.class_index.to_numpy()] = 0.9
    wrong = train.index[:3]
    for k, i in enumerate(wrong):  # confidently another class for three images
        probs[k] = 0.01
        probs[k, (train.at[i, "class_index"] + 1) % len(classes)] = 0.95
    np.savez(tmp_path / "oof.npz", image_id=train.image_id.to_numpy(str), probs=probs, classes=np.array(classes))
    for method, threshold in (("confident_learning", 0.5), ("loss", 1.0)):
        cfg = _cfg(workers=1, noise_oof=str(tmp_path / "oof.npz"), noise_method=method, noise_threshold=threshold)
        preprocess.run(cfg, str(sample_dir), str(tmp_path / method))
        got = pd.read_parquet(tmp_path / method / "manifest.parquet")
        noisy = got[got.status == "noisy"]
        assert set(noisy.image_id) == set(train.loc[wrong, "image_id"]) and (noisy.fold == -1).all()
        assert "predicted" in noisy.reason.iloc[0]


def test_workers_see_storage_settings_set_after_the_fork_server_started(monkeypatch) -> None:
    # The fork server keeps the environment it started with; an S3 endpoint set later (a notebook, a test
    # fixture) must still reach the workers that read the files.
    with preprocess.worker_pool(2) as pool:
        pool.submit(int).result()
    monkeypatch.setenv("FINEGRAIN_S3_ENDPOINT", "127.0.0.1:9")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with preprocess.worker_pool(2) as pool:
        seen = [pool.submit(os.getenv, key).result() for key in ("FINEGRAIN_S3_ENDPOINT", "AWS_ACCESS_KEY_ID")]
    assert seen == ["127.0.0.1:9", None]


def _quiet_cfg():
    cfg = _cfg("auto", workers=1)
    cfg.tracking.enabled = False
    return cfg


def test_sample_config_reads_an_imagefolder_set_and_ignores_its_alias_pair(tmp_path: Path, capsys) -> None:
    from tests.support.datasets import imagefolder

    data = imagefolder(tmp_path / "data", {"cat": 3, "dog": 3}, n_test=2, size=(40, 32))
    cfg = load_config("configs/sample.yaml", ["tracking.enabled=false", "preprocess.workers=1"])  # as shipped
    summary = preprocess.run(cfg, str(data), str(tmp_path / "out"))
    assert summary["layout"] == "imagefolder" and summary["classes"] == 2 and summary["test"] == 2
    classes = json.loads((tmp_path / "out" / "classes.json").read_text("utf-8"))
    assert classes["aliases"] == {} and classes["submission_columns"] == ["cat", "dog"]
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warning == ["warning: data.aliases: ignoring 1 pair(s) naming a class this dataset does not have: "
                       "뉴_스포티지_2021_2023 -> 스포티지_5세대_2021_2023"]  # fmt: skip
    assert "ignored, naming a class this dataset does not have" in (tmp_path / "out" / "report.md").read_text("utf-8")


def test_a_dataset_without_test_images_fails_before_any_image_is_read(tmp_path: Path, monkeypatch) -> None:
    from finegrain.data.layouts import DatasetError
    from tests.support.datasets import imagefolder

    data = imagefolder(tmp_path / "data", {"cat": 3, "dog": 3}, n_test=0)
    monkeypatch.setattr(preprocess, "scan_table", lambda *a, **k: pytest.fail("scanned a dataset it must refuse"))
    with pytest.raises(DatasetError, match="no test images"):
        preprocess.run(_quiet_cfg(), str(data), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_classes_left_without_usable_images(tmp_path: Path) -> None:
    from finegrain.data.layouts import DatasetError
    from tests.support.datasets import imagefolder

    data = imagefolder(tmp_path / "data", {"cat": 3, "dog": 3, "fox": 2}, n_test=1, size=(40, 32))
    for i in range(2):
        (data / "train" / "fox" / f"fox{i}.jpg").write_bytes(b"")  # every fox unusable
    summary = preprocess.run(_quiet_cfg(), str(data), str(tmp_path / "out"))
    assert summary["warnings"] == ["class 'fox' keeps no usable training image (each is corrupt, a duplicate or a "
                                   "conflict): the model will never predict it"]  # fmt: skip
    for i in range(3):
        (data / "train" / "dog" / f"dog{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"only 1 class\(es\) keep a usable training image .*\['cat'\]"):
        preprocess.run(_quiet_cfg(), str(data), str(tmp_path / "out2"))
