"""WeightedEnsemble, HierarchicalTempering, OOF alignment and the ensemble step on synthetic members."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finegrain import storage
from finegrain.config import config_from_dict
from finegrain.metrics import log_loss, softmax
from finegrain.posthoc.calibration import scaler_from_dict
from finegrain.posthoc.ensembling import HierarchicalTempering, WeightedEnsemble, groups_to_index
from finegrain.posthoc.members import load_members, load_npz
from finegrain.steps import calibrate, ensemble
from finegrain.tracking.pyfunc import apply_post
from finegrain.tracking.registry import post_spec
from tests.support.synthetic_members import make_members


def _members_probs(n: int = 600, n_classes: int = 8, seed: int = 0):
    """Three members of different quality, each calibrated-ish, plus a useless one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    onehot = np.eye(n_classes)[y]
    probs = {}
    for name, signal in (("good", 3.0), ("mid", 2.0), ("weak", 1.0)):
        probs[name] = softmax(signal * onehot + rng.normal(0, 1.0, size=(n, n_classes)))
    probs["noise"] = softmax(rng.normal(0, 1.0, size=(n, n_classes)))
    return probs, y


def test_optimized_never_worse_than_best_member_or_uniform() -> None:
    probs, y = _members_probs()
    opt = WeightedEnsemble("optimized").fit(probs, y)
    assert opt.oof_logloss_ <= min(opt.member_logloss_.values()) + 1e-12
    assert opt.oof_logloss_ <= opt.uniform_logloss_ + 1e-12
    assert sum(opt.weights_.values()) == pytest.approx(1.0)
    assert opt.weights_["good"] > opt.weights_["weak"] and opt.weights_["noise"] < 0.05
    assert opt.oof_logloss_ == pytest.approx(log_loss(y, opt.predict_proba(probs)))


def test_optimized_falls_back_to_best_single_member() -> None:
    # Identical members except one that is much worse: the best single member (or the optimum) must win.
    probs, y = _members_probs()
    two = {"good": probs["good"], "noise": probs["noise"]}
    opt = WeightedEnsemble("optimized").fit(two, y)
    assert opt.oof_logloss_ <= opt.member_logloss_["good"] + 1e-12


def test_inverse_logloss_and_uniform_weights() -> None:
    probs, y = _members_probs()
    inv = WeightedEnsemble("inverse_logloss").fit(probs, y)
    raw = {k: 1.0 / (1.0 + log_loss(y, p)) for k, p in probs.items()}
    total = sum(raw.values())
    for k in probs:
        assert inv.weights_[k] == pytest.approx(raw[k] / total)
    uni = WeightedEnsemble("uniform").fit(probs, y)
    assert set(uni.weights_.values()) == {0.25}
    assert uni.oof_logloss_ == pytest.approx(uni.uniform_logloss_)
    with pytest.raises(ValueError, match="unknown"):
        WeightedEnsemble("median").fit(probs, y)


def test_optimized_respects_alias_pairs() -> None:
    # Member "split" spreads the true class's mass across an alias pair: scored as one class it is perfect.
    classes = ["a", "a2", "b"]
    y = np.array([0, 1, 2, 0])
    split = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    blurry = np.full((4, 3), 1 / 3)
    ens = WeightedEnsemble("optimized", classes=classes, aliases={"a2": "a"}).fit(
        {"s": split, "u": blurry}, y
    )
    assert ens.weights_["s"] == pytest.approx(1.0, abs=1e-3)


def _hierarchical_data(n: int = 3000, seed: int = 0, distort: bool = True):
    """Calibrated probabilities from a two-level model; optionally made over-confident within groups only."""
    rng = np.random.default_rng(seed)
    n_groups, size = 4, 3
    n_classes = n_groups * size
    group_of = np.arange(n_classes) // size
    y = rng.integers(0, n_classes, size=n)
    # Exact posteriors of a Gaussian observation with group-shared mean: calibrated by construction.
    means = 1.0 * np.eye(n_classes) + 2.0 * (group_of[:, None] == group_of[None, :])
    z = means[y] + rng.normal(size=(n, n_classes))
    probs = softmax(z @ means)
    if distort:
        g = HierarchicalTempering(group_of)
        probs = g._compose(*g._decompose(probs), 0.5, 3.0)  # under-confident groups, over-confident within
    return probs, y, group_of


def test_hierarchical_used_when_group_structure_helps() -> None:
    probs, y, group_of = _hierarchical_data(distort=True)
    model = HierarchicalTempering(group_of).fit(probs, y)
    assert model.helps_ and model.cv_logloss_ < model.flat_logloss_ - 0.01
    assert model.alpha_ == pytest.approx(2.0, rel=0.25) and model.beta_ == pytest.approx(1 / 3, rel=0.25)
    np.testing.assert_allclose(model.transform(probs).sum(1), 1.0)


def test_hierarchical_not_used_when_it_does_not_help() -> None:
    probs, y, group_of = _hierarchical_data(distort=False)
    model = HierarchicalTempering(group_of).fit(probs, y)
    assert not model.helps_
    assert model.alpha_ == pytest.approx(1.0, abs=0.2) and model.beta_ == pytest.approx(1.0, abs=0.2)


def test_groups_to_index_checks_classes() -> None:
    np.testing.assert_array_equal(groups_to_index([["b", "c"]], ["a", "b", "c"]), [1, 0, 0])
    with pytest.raises(ValueError, match="not among"):
        groups_to_index([["z"]], ["a"])
    with pytest.raises(ValueError, match="more than one group"):
        groups_to_index([["a"], ["a"]], ["a"])


def _cfg(tmp_path, tracking: bool = False, **ens):
    return config_from_dict(
        {
            "ensemble": ens,
            "tracking": {
                "enabled": tracking,
                "uri": f"sqlite:///{tmp_path}/mlruns.db",
                "experiment": "test-ens",
            },
        }
    )


def _write_groups(path, n_classes: int = 12, size: int = 3) -> str:
    groups = [
        [f"class_{i:03d}" for i in range(s, min(s + size, n_classes))] for s in range(0, n_classes, size)
    ]
    storage.write_text(storage.join(path, "groups.json"), json.dumps({"groups": groups}))
    return str(path)


def test_ensemble_step_end_to_end(tmp_path) -> None:
    uris = make_members(tmp_path, backbones=("a", "b", "c"))
    cfg = _cfg(tmp_path)
    calibrate.run(cfg, members=uris, out=str(tmp_path / "cal"))
    out = tmp_path / "ens"
    summary = ensemble.run(cfg, uris, str(tmp_path / "cal"), str(out), groups=_write_groups(tmp_path / "rg"))
    result = json.loads((out / "ensemble.json").read_text())
    assert summary["ensemble_oof_logloss"] == pytest.approx(result["ensemble_oof_logloss"])
    by_method = result["ensemble_oof_logloss_in_sample_by_method"]
    assert by_method["optimized"] <= min(result["backbone_oof_logloss"].values()) + 1e-12
    assert by_method["optimized"] <= result["uniform_oof_logloss_in_sample"] + 1e-12
    assert sum(result["weights"].values()) == pytest.approx(1.0)
    assert sum(result["member_weights"].values()) == pytest.approx(1.0)
    for k, v in result["member_oof_logloss"].items():
        assert v < result["member_oof_logloss_uncalibrated"][k]  # members were over-confident
    h = result["hierarchical"]
    assert h["tried"] and h["oof_logloss_hier"] is not None
    # the headline is cross-fitted: another number than the in-sample one, and the one oof_probs.npz holds
    assert result["ensemble_oof_logloss"] != pytest.approx(result["ensemble_oof_logloss_in_sample"], abs=1e-6)
    assert result["cross_fit"]["folds"] == 3 and 0 < result["prior_mix_eps"] < 1
    assert f"eps = {result['prior_mix_eps']:g}" in (out / "report.md").read_text()
    oof = load_npz(str(out / "oof_probs.npz"))
    assert log_loss(oof["labels"], oof["probs_in_sample"]) == pytest.approx(
        result["ensemble_oof_logloss_in_sample"]
    )
    test = load_npz(str(out / "test_probs.npz"))
    assert oof["probs"].shape == (360, 12) and test["probs"].shape == (60, 12)
    np.testing.assert_allclose(test["probs"].sum(1), 1.0)
    assert log_loss(oof["labels"], oof["probs"]) == pytest.approx(result["ensemble_oof_logloss"])
    assert list(test["classes"]) == load_members(uris)[0].classes
    # The ensemble beats every backbone on the hidden test labels too.
    test_y = np.load(tmp_path / "members" / "test_labels.npy")
    order = np.argsort([f"test_{i:05d}" for i in range(len(test_y))])
    assert log_loss(test_y[order], test["probs"]) < 0.9 * min(result["backbone_oof_logloss"].values())
    assert "| a |" in (out / "report.md").read_text() and (out / "config.yaml").exists()


def test_ensemble_step_on_s3_with_tracking(tmp_path, s3_bucket) -> None:
    uris = make_members(tmp_path, backbones=("a", "b"), folds=2)
    cfg = _cfg(tmp_path, tracking=True, method="inverse_logloss", hierarchical=False)
    cal = f"{s3_bucket}/cal"
    calibrate.run(
        cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})}), uris, cal
    )
    out = f"{s3_bucket}/ens"
    ensemble.run(cfg, uris, cal, out, groups=None)
    result = json.loads(storage.read_text(f"{out}/ensemble.json"))
    assert result["method"] == "inverse_logloss" and not result["hierarchical"]["tried"]
    assert storage.read_text(f"{out}/mlflow_run_id").strip()
    assert load_npz(f"{out}/test_probs.npz")["probs"].shape[1] == 12


def test_oof_alignment_rejects_mismatched_ids(tmp_path) -> None:
    a = make_members(tmp_path / "x", backbones=("a",), folds=2, n_per_class=10)
    b = make_members(tmp_path / "y", backbones=("b",), folds=2, n_per_class=12)  # more train rows
    cfg = _cfg(tmp_path)
    calibrate.run(cfg, a + b, str(tmp_path / "cal"))
    with pytest.raises(ValueError, match="OOF image_ids of backbone 'b' differ"):
        ensemble.run(cfg, a + b, str(tmp_path / "cal"), str(tmp_path / "ens"))


def test_oof_alignment_rejects_overlapping_folds(tmp_path) -> None:
    a = make_members(tmp_path / "x", backbones=("a",), folds=2)
    # A copy of fold0 claiming to be fold1: the same image is then out-of-fold twice.
    dup = tmp_path / "dup"
    storage.copy(storage.join(a[0], "oof.npz"), str(dup / "oof.npz"))
    storage.copy(storage.join(a[0], "test.npz"), str(dup / "test.npz"))
    meta = json.loads(storage.read_text(storage.join(a[0], "metrics.json"))) | {"fold": 1}
    storage.write_text(str(dup / "metrics.json"), json.dumps(meta))
    cfg = _cfg(tmp_path)
    calibrate.run(cfg, [a[0], str(dup)], str(tmp_path / "cal"))
    with pytest.raises(ValueError, match="more than one fold"):
        ensemble.run(cfg, [a[0], str(dup)], str(tmp_path / "cal"), str(tmp_path / "ens"))


def test_ensemble_step_requires_member_temperature(tmp_path) -> None:
    uris = make_members(tmp_path, backbones=("a",), folds=2)
    storage.write_text(
        str(tmp_path / "cal" / "calibration.json"), json.dumps({"a/fold0": {"temperature": 2.0}})
    )
    with pytest.raises(ValueError, match="no temperature for member 'a/fold1'"):
        ensemble.run(_cfg(tmp_path), uris, str(tmp_path / "cal"), str(tmp_path / "ens"))


@pytest.mark.parametrize("hierarchical", [True, False])
def test_served_model_applies_what_made_the_submission(tmp_path, hierarchical) -> None:
    # The registered model rebuilds the ensemble from ensemble.json (post_spec) and calibration.json; on the
    # members' test logits it must give test_probs.npz, which the submission is written from: prior mix included.
    uris = make_members(tmp_path, backbones=("a", "b"), overconfidence=6.0)
    cfg = _cfg(tmp_path, hierarchical=hierarchical)
    calibrate.run(cfg, members=uris, out=str(tmp_path / "cal"))
    out = tmp_path / "ens"
    ensemble.run(cfg, uris, str(tmp_path / "cal"), str(out), groups=_write_groups(tmp_path / "rg"))
    ens = json.loads((out / "ensemble.json").read_text())
    cal = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    post = post_spec(ens)
    assert post["prior_mix"]["eps"] == ens["prior_mix_eps"] > 0
    members = load_members(uris)
    order = np.argsort(members[0].test_ids)
    weighted = sum(
        ens["member_weights"][m.key] * scaler_from_dict(cal[m.key]).transform(m.test_logits[order])
        for m in members
    )
    served = apply_post(post, weighted, members[0].classes)
    np.testing.assert_allclose(served, load_npz(str(out / "test_probs.npz"))["probs"], rtol=1e-9, atol=1e-12)
    prior = np.asarray(ens["prior_mix"]["prior"])
    assert np.all(served >= ens["prior_mix_eps"] * prior - 1e-15)
