"""Submission: exact columns and order, alias split/duplicate math, the validator's refusals, the step end to end
(sample dataset, S3, MLflow). The optional POST to an endpoint is in test_submit_post.py."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finegrain import storage
from finegrain.config import load_config
from finegrain.metrics import log_loss
from finegrain.posthoc.members import save_npz
from finegrain.posthoc.submission import (
    SubmissionError,
    build_submission,
    validate_submission,
    write_submission,
)
from tests.support.paths import REPO as ROOT

NFD = [unicodedata.normalize("NFD", c) for c in ("캐스퍼_2022", "가나_2020", "뉴_스포티지", "스포티지_5세대")]
NFC_CLASSES = ["가나_2020", "스포티지_5세대", "캐스퍼_2022"]  # canonical, sorted; 뉴_스포티지 is an alias
ALIASES = {"뉴_스포티지": "스포티지_5세대"}


def _probs(n: int, n_classes: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).dirichlet(np.ones(n_classes) * 0.5, size=n)
    return p


def _build(mode: str = "split", ids=None, test_ids=None, probs=None):
    test_ids = test_ids or [f"TEST_{i:03d}" for i in range(6)]
    ids = ids or test_ids[::-1]  # test_probs rows in another order than test.csv
    probs = _probs(len(ids), 3) if probs is None else probs
    col2cls = {c: unicodedata.normalize("NFC", c) for c in NFD}
    frame = build_submission(probs, NFC_CLASSES, ids, NFD, col2cls, test_ids, ALIASES, mode)
    return frame, probs, ids, test_ids


def test_writer_keeps_exact_column_strings_order_and_id_order(tmp_path):
    frame, probs, ids, test_ids = _build()
    path = write_submission(frame, tmp_path / "submission.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # utf-8-sig
    header = raw.decode("utf-8-sig").splitlines()[0]
    assert header == ",".join(["ID", *NFD])  # NFD bytes kept, sample order kept (not alphabetical)
    back = pd.read_csv(path, encoding="utf-8-sig")
    assert back["ID"].tolist() == test_ids
    assert np.allclose(back.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)
    # 캐스퍼 (first column) carries the canonical class's probability of the matching test_probs row.
    row = {i: r for r, i in enumerate(ids)}
    assert np.allclose(back[NFD[0]], probs[[row[i] for i in test_ids], 2], atol=1e-9)
    check = validate_submission(path, ["ID", *NFD], test_ids)
    assert check["ok"] and check["n_columns"] == 5 and abs(check["row_sum_max"] - 1) < 1e-6


@pytest.mark.parametrize("mode", ["split", "duplicate"])
def test_alias_mass_makes_the_merged_logloss_right(mode):
    frame, probs, ids, _ = _build(mode)
    y = np.random.default_rng(1).integers(0, 3, size=len(ids))  # canonical labels of the test_probs rows
    y_by_id = dict(zip(ids, y))
    sub = frame.iloc[:, 1:].to_numpy()
    sub_classes = [unicodedata.normalize("NFC", c) for c in NFD]
    y_sub = [NFC_CLASSES[y_by_id[i]] for i in frame["ID"]]
    scored = log_loss(np.array(y_sub), sub, sub_classes, ALIASES)  # the scorer: pair summed
    canonical = log_loss(y, probs)
    if mode == "split":
        assert scored == pytest.approx(canonical, rel=1e-12)
        assert np.allclose(frame[NFD[2]], frame[NFD[3]])  # p/2 each
    else:
        # duplicate: pair gets 2p/(1+p), every other class q/(1+p), where p = the pair's canonical mass.
        p_pair = probs[:, 1]
        target = np.where(y == 1, 2 * p_pair / (1 + p_pair), probs[np.arange(len(y)), y] / (1 + p_pair))
        assert scored == pytest.approx(-np.mean(np.log(target)), rel=1e-12)
    assert np.allclose(sub.sum(axis=1), 1.0)


def test_test_id_mismatch_and_unknown_columns_are_errors():
    ids = [f"TEST_{i:03d}" for i in range(6)]
    with pytest.raises(SubmissionError, match="only in test.csv"):
        _build(ids=ids[:5], test_ids=ids, probs=_probs(5, 3))
    col2cls = {c: c for c in ["가나_2020", "스포티지_5세대", "모르는_차"]}
    with pytest.raises(SubmissionError, match="match no predicted class"):
        build_submission(_probs(2, 3), NFC_CLASSES, ids[:2], list(col2cls), col2cls, ids[:2], {}, "split")
    col2cls = {c: c for c in NFC_CLASSES[:2]}
    with pytest.raises(SubmissionError, match="no submission column"):
        build_submission(_probs(2, 3), NFC_CLASSES, ids[:2], list(col2cls), col2cls, ids[:2], {}, "split")


def _good(tmp_path) -> tuple[pd.DataFrame, list[str]]:
    frame, _, _, test_ids = _build()
    path = write_submission(frame, tmp_path / "good.csv")
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False), test_ids


def _set(df: pd.DataFrame, row: int, col: int, value: str) -> pd.DataFrame:
    df.iloc[row, col] = value
    return df


BAD = {
    "missing_id": ("ids", lambda d: d.iloc[1:]),
    "extra_id": ("ids", lambda d: pd.concat([d, d.iloc[:1].assign(ID="TEST_999")])),
    "duplicated_id": ("ids", lambda d: _set(d, 1, 0, d.iloc[0, 0])),
    "wrong_id_order": ("ids", lambda d: d.iloc[::-1]),
    "missing_column": ("columns", lambda d: d.drop(columns=[NFD[1]])),
    "extra_column": ("columns", lambda d: d.assign(extra="0")),
    "reordered_columns": ("columns", lambda d: d[["ID", NFD[1], NFD[0], NFD[2], NFD[3]]]),
    "nfc_instead_of_nfd": (
        "columns",
        lambda d: d.rename(columns={NFD[0]: unicodedata.normalize("NFC", NFD[0])}),
    ),
    "non_numeric": ("numeric", lambda d: _set(d, 2, 1, "abc")),
    "empty_cell": ("numeric", lambda d: _set(d, 2, 1, "")),
    "nan": ("finite", lambda d: _set(d, 0, 2, "nan")),
    "inf": ("finite", lambda d: _set(d, 0, 2, "inf")),
    "negative": ("non_negative", lambda d: _set(d, 3, 1, "-0.1")),
    "row_sum": ("row_sums", lambda d: _set(d, 4, 1, "0.9")),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_validator_rejects(kind, tmp_path):
    good, test_ids = _good(tmp_path)
    check, mutate = BAD[kind]
    bad = mutate(good.copy())
    path = tmp_path / "bad.csv"
    path.write_bytes(bad.to_csv(index=False).encode("utf-8-sig"))
    with pytest.raises(SubmissionError, match=check) as info:
        validate_submission(path, ["ID", *NFD], test_ids)
    assert info.value.result["checks"][check]["ok"] is False
    assert isinstance(info.value, ValueError)


def _e2e_probs(
    sample_dir: Path, tmp_path: Path, drop_one: bool = False
) -> tuple[str, dict, np.ndarray, list]:
    """Synthetic ensemble test_probs.npz for the sample's test images (canonical classes, alias merged)."""
    key = json.loads((sample_dir / "answer_key.json").read_text(encoding="utf-8"))
    aliases = key["aliases"]
    classes = sorted(unicodedata.normalize("NFC", c) for c in key["classes"] if c not in aliases)
    labels = key["test_labels"]
    ids = sorted(labels)[1:] if drop_one else sorted(labels)
    truth = [classes.index(aliases.get(labels[i], labels[i])) for i in ids]
    probs = _probs(len(ids), len(classes), seed=3)
    probs[np.arange(len(ids)), truth] += 2.0  # a decent model
    probs /= probs.sum(axis=1, keepdims=True)
    uri = str(tmp_path / "ensemble")
    save_npz(
        storage.join(uri, "test_probs.npz"), image_id=np.array(ids), probs=probs, classes=np.array(classes)
    )
    return uri, aliases, probs, truth


def _cfg(tmp_path, *overrides: str):
    sets = [f"tracking.uri=sqlite:///{tmp_path}/mlruns.db", "tracking.experiment=test-submit", *overrides]
    return load_config(ROOT / "configs" / "sample.yaml", sets)


def test_step_end_to_end_on_sample_with_s3_and_mlflow(sample_dir, tmp_path, s3_bucket):
    from finegrain.steps import submit

    ensemble, aliases, probs, truth = _e2e_probs(sample_dir, tmp_path)
    out = f"{s3_bucket}/submit"
    summary = submit.run(_cfg(tmp_path), ensemble, str(sample_dir), out)
    assert summary["alias_columns"] == 1 and summary["n_rows"] == len(truth)
    local = storage.download_dir(out, tmp_path / "got")
    sample = pd.read_csv(sample_dir / "sample_submission.csv", encoding="utf-8-sig")
    sub = pd.read_csv(local / "submission.csv", encoding="utf-8-sig")
    assert list(sub.columns) == list(sample.columns)
    assert sub["ID"].tolist() == pd.read_csv(sample_dir / "test.csv")["ID"].tolist()
    check = json.loads((local / "submission_check.json").read_text(encoding="utf-8"))
    assert check["ok"] and all(c["ok"] for c in check["checks"].values())
    assert check["alias_mode"] == "split" and len(check["alias_columns"]) == 1
    # Scored as the organisers do (pair merged), the file's LogLoss is our canonical LogLoss.
    key = json.loads((sample_dir / "answer_key.json").read_text(encoding="utf-8"))
    cols = [unicodedata.normalize("NFC", c) for c in sub.columns[1:]]
    y = np.array([unicodedata.normalize("NFC", key["test_labels"][i]) for i in sub["ID"]])
    scored = log_loss(y, sub.iloc[:, 1:].to_numpy(), cols, aliases)
    assert scored == pytest.approx(log_loss(truth, probs), rel=1e-6)
    assert (local / "mlflow_run_id").read_text().strip()  # the MLflow run was created
    logged = {p.name for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()}
    assert {"submission.csv", "submission_check.json"} <= logged


def test_step_refuses_test_id_mismatch(sample_dir, tmp_path):
    from finegrain.steps import submit

    ensemble, *_ = _e2e_probs(sample_dir, tmp_path, drop_one=True)
    with pytest.raises(SubmissionError, match="test ids differ"):
        submit.run(_cfg(tmp_path, "tracking.enabled=false"), ensemble, str(sample_dir), str(tmp_path / "o"))


def test_step_refuses_a_dataset_without_test_images(tmp_path):
    from finegrain.steps import submit
    from tests.support.datasets import imagefolder

    data = imagefolder(tmp_path / "data", {"a": 2, "b": 2}, n_test=0)
    ensemble = str(tmp_path / "ensemble")
    save_npz(storage.join(ensemble, "test_probs.npz"), image_id=np.array([], dtype=str),
             probs=np.zeros((0, 2)), classes=np.array(["a", "b"]))  # fmt: skip
    with pytest.raises(SubmissionError, match="no test images, so nothing to submit"):
        submit.run(_cfg(tmp_path, "tracking.enabled=false"), ensemble, str(data), str(tmp_path / "o"))
    assert not (tmp_path / "o" / "submission.csv").exists()
