"""The whole pipeline through kfp.local on the generated sample data (the same pipeline function as on the cluster).

Small settings (one backbone, 1 epoch, 64 px, a few steps) keep it to a few minutes on 2 cores; `make run` uses the full
sample config. Then, on the same outputs, each rerun checks what runs again and why: after images were added,
preprocess and every member; unchanged, no step (only the plan and the parent-run tasks); `ensemble.method`
changed, only ensemble, submit and register; a backbone added (a tiny one), only its members and the steps
after train; that backbone's `lr` changed, only its members again. Then `finegrain gc` frees what the latest run
does not use, and that run is still served whole from the cache. The tests in this module share those runs and
run in file order; each run prints its duration. The first run is the session's (tests/orchestration/conftest.py),
which tests/orchestration/test_local_model.py reads before this module reruns on its outputs.
"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.local_runs import (
    AFTER_TRAIN,
    BOOKKEEPING,
    CACHED,
    LITE0,
    TINY,
    member_count,
    output_path,
    parent_status,
    rerun,
    step_counts,
)
from tests.support.paths import REPO as ROOT

pytestmark = pytest.mark.slow

CONFIG = ROOT / "configs/sample.yaml"


@pytest.fixture(scope="module", autouse=True)
def in_the_run_directory(local_run):
    """The reruns below run where the first one did (tests/orchestration/conftest.py makes it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(local_run[1].parent)  # the relative sqlite:/// tracking store lands in the run directory
        yield


def test_layout_matches_the_design(local_run):
    cfg, out, _ = local_run
    for rel in ["preprocess/manifest.parquet", "preprocess/classes.json", "preprocess/report.md",
                "regroup/groups.json", "regroup/tsne.png", "calibrate/calibration.json", "calibrate/reliability.png",
                "ensemble/ensemble.json", "ensemble/test_probs.npz", "submit/submission.csv",
                "submit/submission_check.json"]:
        assert (out / rel).exists(), rel
    for b in cfg.train.backbones:
        for k in range(cfg.data.folds):
            for name in ["model.pt", "oof.npz", "test.npz", "metrics.json", "config.yaml"]:
                assert (out / "train" / b.name / f"fold{k}" / name).exists(), (b.name, k, name)


def test_submission_is_valid_and_complete(local_run, sample_dir):
    _, out, summary = local_run
    assert summary["submission_valid"]
    sub = pd.read_csv(out / "submit" / "submission.csv", encoding="utf-8-sig")
    sample = pd.read_csv(sample_dir / "sample_submission.csv", encoding="utf-8-sig")
    assert list(sub.columns) == list(sample.columns)
    assert list(sub["ID"]) == list(sample["ID"])
    assert (sub.drop(columns="ID").sum(axis=1) - 1).abs().max() < 1e-6


def test_planted_problems_are_reported(local_run, dataset):
    _, out, _ = local_run
    key = json.loads((dataset / "answer_key.json").read_text(encoding="utf-8"))
    manifest = pd.read_parquet(out / "preprocess" / "manifest.parquet")
    status = dict(zip(manifest["path"].map(lambda p: Path(p).relative_to(dataset).as_posix()), manifest["status"]))
    for item in key["corrupt"]:
        rel = item["path"] if isinstance(item, dict) else item
        assert status[rel] == "corrupt"
    for a, b in key["cross_class_duplicates"]:
        assert status[a] == status[b] == "cross_class_conflict"
    report = (out / "preprocess" / "report.md").read_text(encoding="utf-8")
    for item in key["corrupt"]:
        assert Path(item["path"] if isinstance(item, dict) else item).name in report


def test_summary_reports_members_and_ensemble(local_run):
    from finegrain.orchestration.local import format_summary

    cfg, _, summary = local_run
    assert len(summary["members"]) == len(cfg.train.backbones) * cfg.data.folds
    assert all(m["val_logloss"] is not None and m["temperature"] is not None for m in summary["members"])
    # the headline is after one temperature fitted on the fold's rows, never worse than the raw softmax's
    assert all(m["val_logloss"] <= m["val_logloss_raw"] + 1e-9 for m in summary["members"])
    ens = summary["ensemble"]
    assert ens["ensemble_oof_logloss"] is not None and ens["ensemble_oof_logloss_in_sample"] is not None
    assert 0 < ens["prior_mix"]["eps"] < 1
    text = format_summary(summary)
    assert "raw LL" in text and "cross-fitted over folds" in text and f"prior mix eps {ens['prior_mix']['eps']:g}" in text
    # preprocess in words, not a Python dict: `preprocess: 417 ok, 6 duplicate, ...; 13 duplicate groups, ...`
    (pre_line,) = [line for line in text.splitlines() if line.startswith("preprocess: ")]
    assert "{" not in pre_line and f"{summary['preprocess']['training_rows']} training rows" in pre_line
    assert f"{summary['preprocess']['status']['ok']} ok" in pre_line


def test_registered_model_reproduces_the_submission(local_run, sample_dir):
    """The MLflow pyfunc registered by submit maps images to the submission columns exactly as the pipeline did."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient

    cfg, out, summary = local_run
    name = cfg.tracking.register_model
    versions = MlflowClient(tracking_uri=cfg.tracking.uri).search_model_versions(f"name='{name}'")
    assert versions, "the ensemble was not registered"
    mlflow.set_tracking_uri(cfg.tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{max(int(v.version) for v in versions)}")
    test = pd.read_csv(sample_dir / "test.csv", encoding="utf-8-sig").head(5)
    images = [(sample_dir / p).read_bytes() for p in test["img_path"]]
    pred = model.predict(pd.DataFrame({"image": images}))
    sub = pd.read_csv(out / "submit" / "submission.csv", encoding="utf-8-sig").set_index("ID")
    assert list(pred.columns) == list(sub.columns)
    np.testing.assert_allclose(pred.to_numpy(), sub.loc[test["ID"]].to_numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def reruns() -> dict:
    """Summaries of the reruns below, for the ones after them."""
    return {}


MEMBER = "train/efficientnet_lite0/fold{}"


def test_added_images_are_fingerprinted_and_every_member_retrained(local_run, dataset, reruns):
    from PIL import Image

    cfg, out, first = local_run
    cls = sorted(p for p in (dataset / "train").iterdir() if p.is_dir())[0]
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, size=(80, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(cls / f"added_{i}.jpg", quality=90)
    summary = reruns["added"] = rerun(cfg, dataset, out, label="images added")
    assert summary["submission_valid"]
    assert summary["data_hash"] != first["data_hash"]
    assert all(summary["keys"][t] != first["keys"][t] for t in first["keys"])  # new data: every key is new
    ran, cached = summary["tasks"]["ran"], summary["tasks"]["cached"]
    assert ran["preprocess"] == 1 and ran["train"] == member_count(cfg) and not cached
    assert summary["why"]["preprocess"].startswith("ran: the data changed (hash ")
    assert summary["why"][MEMBER.format(0)] == "ran: input preprocess changed"
    manifest = pd.read_parquet(out / "preprocess" / "manifest.parquet")  # the link follows the latest run
    assert {f"added_{i}.jpg" for i in range(3)} <= set(manifest["path"].map(lambda p: Path(p).name))
    for k in range(cfg.data.folds):
        assert (output_path(summary, MEMBER.format(k)) / "metrics.json").exists(), k
        assert (out / MEMBER.format(k)).resolve() == output_path(summary, MEMBER.format(k))
        # the first run's members are untouched in their own directories
        assert (output_path(first, MEMBER.format(k)) / "metrics.json").exists(), k


def test_the_rerun_version_is_gated_against_the_champion_on_its_out_of_fold_images(local_run, reruns):
    """The rerun registers a new version as challenger; with no holdout configured, it and the champion are scored
    on this run's out-of-fold images, and champion moves only if the gate says so."""
    from mlflow import MlflowClient

    cfg, _, _ = local_run
    p = json.loads((output_path(reruns["added"], "register") / "registration.json").read_text(encoding="utf-8"))["promotion"]
    assert p["eval_set"].startswith("out-of-fold images of this run") and p["champion_before"] == "1"
    assert p["images"] > 0 and p["challenger_logloss"] > 0 and p["champion_logloss"] > 0
    gain = p["champion_logloss"] - p["challenger_logloss"]
    assert p["decision"] == ("promoted" if gain >= cfg.promotion.min_improvement else "kept")
    client, name = MlflowClient(tracking_uri=cfg.tracking.uri), cfg.tracking.register_model
    assert str(client.get_model_version_by_alias(name, "champion").version) == p["champion"]
    assert str(client.get_model_version_by_alias(name, "challenger").version) == p["version"]
    assert client.get_model_version(name, p["version"]).tags["finegrain.promotion.decision"] == p["decision"]


def test_unchanged_rerun_is_served_from_the_cache(local_run, dataset, reruns, capsys):
    cfg, out, _ = local_run
    first = reruns["added"]  # the run after images were added: this one changes nothing
    manifest = out / "preprocess" / "manifest.parquet"
    before = manifest.stat().st_mtime_ns
    capsys.readouterr()
    summary = reruns["unchanged"] = rerun(cfg, dataset, out)
    assert summary["submission_valid"] and summary["keys"] == first["keys"]
    # only the plan and the parent run's start and end run; every step is a kfp.local cache hit
    assert summary["tasks"]["ran"] == BOOKKEEPING
    assert summary["tasks"]["cached"] == {
        "preprocess": 1, "train": member_count(cfg), "regroup": 1, "calibrate": 1, "ensemble": 1, "submit": 1,
        "register": 1,
    }  # fmt: skip
    assert set(summary["why"].values()) == {CACHED}
    assert manifest.stat().st_mtime_ns == before, "preprocess ran again instead of coming from the cache"
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(f"local pipeline run (unchanged): {summary['elapsed_s']:.0f} s")
    assert (
        "tasks reused from the cache: calibrate, ensemble, preprocess, register, regroup, submit, "
        f"train x{member_count(cfg)}"
    ) in printed
    assert "[finegrain] preprocess: reused from the kfp.local cache" in printed  # said as it happens, too
    n_tasks = len(summary["why"])  # predicted up front, in one line as every task has the same reason
    assert f"[finegrain] plan: all {n_tasks} tasks reuse their outputs (same inputs)" in printed
    assert f"  {MEMBER.format(0):32s} {CACHED}" in printed  # one line per task in the summary
    # a new parent run, ended FINISHED by the exit handler alone (no step ran to touch it)
    assert summary["parent_run_id"] and summary["parent_run_id"] != first["parent_run_id"]
    assert parent_status(cfg, summary["parent_run_id"]) == "FINISHED"


def test_changing_the_ensemble_method_runs_only_ensemble_submit_and_register(local_run, dataset, reruns):
    cfg, out, _ = local_run
    summary = reruns["ensemble"] = rerun(cfg, dataset, out, "ensemble.method=uniform")
    assert summary["submission_valid"] and summary["ensemble"]["method"] == "uniform"
    assert step_counts(summary["tasks"]["ran"]) == {"ensemble": 1, "submit": 1, "register": 1}
    assert summary["tasks"]["cached"] == {"preprocess": 1, "train": member_count(cfg), "regroup": 1, "calibrate": 1}
    assert summary["why"]["ensemble"] == "ran: ensemble.method changed 'optimized' -> 'uniform'"
    assert summary["why"]["submit"] == summary["why"]["register"] == "ran: input ensemble changed"
    assert summary["why"]["calibrate"] == CACHED
    assert summary["registered_model"] and summary["registered_model"] != reruns["added"]["registered_model"]
    # the earlier ensemble is still there under its own key: going back to it finds it
    assert (output_path(reruns["unchanged"], "ensemble") / "ensemble.json").exists()


def test_adding_a_backbone_trains_only_its_members(local_run, dataset, reruns):
    cfg, out, _ = local_run
    added = f"train.backbones=[{LITE0}, {TINY}]"
    summary = reruns["backbone"] = rerun(cfg, dataset, out, "ensemble.method=uniform", added)
    assert summary["submission_valid"] and len(summary["members"]) == 2 * cfg.data.folds
    ran = step_counts(summary["tasks"]["ran"])
    assert ran == {"train": cfg.data.folds, **AFTER_TRAIN}
    assert summary["tasks"]["cached"] == {"preprocess": 1, "train": cfg.data.folds}
    for k in range(cfg.data.folds):
        assert summary["why"][MEMBER.format(k)] == CACHED
        assert summary["why"][f"train/test_efficientnet/fold{k}"] == "ran: not in the previous run"
        assert (out / f"train/test_efficientnet/fold{k}" / "metrics.json").exists()  # linked like the others
    new_members = ", ".join(f"train/test_efficientnet/fold{k}" for k in range(cfg.data.folds))
    assert summary["why"]["regroup"] == f"ran: inputs {new_members} changed"


def test_changing_one_backbones_lr_retrains_only_its_members(local_run, dataset, reruns):
    cfg, out, _ = local_run
    before = reruns["backbone"]
    changed = f"train.backbones=[{LITE0}, {{name: test_efficientnet, lr: 0.003}}]"
    summary = reruns["lr"] = rerun(cfg, dataset, out, "ensemble.method=uniform", changed)
    assert summary["submission_valid"]
    assert step_counts(summary["tasks"]["ran"])["train"] == cfg.data.folds  # the other backbone's members are reused
    assert summary["tasks"]["cached"] == {"preprocess": 1, "train": cfg.data.folds}
    for k in range(cfg.data.folds):
        why = summary["why"][f"train/test_efficientnet/fold{k}"]
        assert why == "ran: train.backbone.lr changed null -> 0.003"
        assert summary["keys"][MEMBER.format(k)] == before["keys"][MEMBER.format(k)]
        metrics = json.loads((out / f"train/test_efficientnet/fold{k}" / "metrics.json").read_text())
        assert metrics["lr"] == 0.003


def test_gc_frees_old_outputs_and_keeps_the_current_ones(local_run, dataset, reruns):
    from typer.testing import CliRunner

    from finegrain.cli import app

    cfg, out, first = local_run
    latest = reruns["lr"]
    result = CliRunner().invoke(app, ["gc", "--out", str(out), "--keep", "1", "--config", str(CONFIG)])
    assert result.exit_code == 0, result.output
    gone = [output_path(first, "preprocess"), output_path(first, MEMBER.format(0)), output_path(reruns["unchanged"], "ensemble"),
            output_path(reruns["backbone"], "train/test_efficientnet/fold0")]  # fmt: skip
    for path in gone:
        assert not path.exists(), path
        assert f"freed {path} (" in result.output
    assert re.search(r"^freed [\d,]+ bytes in \d+ places; kept the outputs of 1 run\(s\)", result.output, re.M)
    for task in latest["keys"]:
        assert output_path(latest, task).is_dir(), task
    assert (out / "submit" / "submission.csv").exists()  # the links still point at the latest outputs
    # what gc kept is whole: an unchanged rerun is still served entirely from the cache
    summary = rerun(cfg, dataset, out, "ensemble.method=uniform", f"train.backbones=[{LITE0}, "
                     "{name: test_efficientnet, lr: 0.003}]", label="unchanged, after gc")  # fmt: skip
    assert summary["tasks"]["ran"] == BOOKKEEPING and summary["keys"] == latest["keys"]


def test_a_failed_pipeline_ends_its_parent_run_failed(local_run, tmp_path):
    """Preprocess fails on a malformed dataset after the parent run was opened: the exit handler ends it FAILED."""
    from finegrain.orchestration.local import run_pipeline_locally

    cfg, _, _ = local_run
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "stray.jpg").write_bytes(b"an image directly under train/")
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="preprocess"):
        run_pipeline_locally(cfg, data=str(bad), out=str(out))
    records = list((out / "work" / "runs").glob("*/mlflow_parent_run.json"))
    assert len(records) == 1
    parent = json.loads(records[0].read_text())["run_id"]
    assert parent and parent_status(cfg, parent) == "FAILED"
