"""Temperature scaling (global and binned) and the calibrate step on synthetic members."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from finegrain.config import config_from_dict
from finegrain.metrics import ece, log_loss, softmax
from finegrain.posthoc.calibration import (
    BinnedTemperatureScaler,
    TemperatureScaler,
    fit_temperature,
    scaler_from_dict,
)
from finegrain.steps import calibrate
from tests.support.synthetic_members import make_members, synthetic_logits


def overconfident(n: int = 600, n_classes: int = 10, overconfidence: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    return synthetic_logits(y, n_classes, rng, signal=1.5, overconfidence=overconfidence), y


def reference_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """An independent fit: Nelder-Mead on T itself with a plainly written NLL."""

    def nll(t: np.ndarray) -> float:
        total = 0.0
        for row, label in zip(logits, y):
            scaled = [v / t[0] for v in row]
            top = max(scaled)
            total += top + math.log(sum(math.exp(v - top) for v in scaled)) - scaled[label]
        return total / len(y)

    return float(minimize(nll, x0=[1.0], method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-12}).x[0])


def test_temperature_lowers_nll_and_ece_and_keeps_argmax() -> None:
    logits, y = overconfident()
    scaler = TemperatureScaler().fit(logits, y)
    before, after = softmax(logits), scaler.transform(logits)
    assert scaler.temperature_ > 1.5  # the logits were made 3x over-confident
    assert log_loss(y, after) < log_loss(y, before) - 0.05
    assert ece(y, after) < ece(y, before)
    np.testing.assert_array_equal(after.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(scaler.predict_proba(logits), after)


@pytest.mark.parametrize("overconf", [0.5, 3.0])
def test_temperature_matches_independent_fit(overconf: float) -> None:
    logits, y = overconfident(n=200, overconfidence=overconf, seed=1)
    assert fit_temperature(logits, y) == pytest.approx(reference_temperature(logits, y), abs=1e-3)


def test_temperature_recovers_planted_overconfidence() -> None:
    # synthetic_logits are exact posterior logits times `overconfidence`, so T should come back near it.
    logits, y = overconfident(n=4000, overconfidence=2.5, seed=2)
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)


def test_temperature_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels for"):
        TemperatureScaler().fit(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        TemperatureScaler().fit(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels outside"):
        TemperatureScaler().fit(np.zeros((1, 2)), np.array([2]))


def test_binned_temperature_keeps_argmax_and_round_trips() -> None:
    logits, y = overconfident(n=900)
    scaler = BinnedTemperatureScaler(n_bins=3, min_bin_size=50).fit(logits, y)
    assert len(scaler.bin_temperatures_) == 3 and scaler.bin_counts_.sum() == 900
    after = scaler.transform(logits)
    np.testing.assert_array_equal(after.argmax(1), logits.argmax(1))
    assert log_loss(y, after) < log_loss(y, softmax(logits))
    clone = scaler_from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_allclose(clone.transform(logits), after)
    # Tiny bins fall back to the global temperature.
    tiny = BinnedTemperatureScaler(n_bins=3, min_bin_size=10_000).fit(logits, y)
    np.testing.assert_allclose(tiny.bin_temperatures_, tiny.temperature_)


def _cfg(tmp_path, **calibrate):
    return config_from_dict(
        {
            "calibrate": calibrate,
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns.db", "experiment": "test-calibrate"},
        }
    )


def test_calibrate_step_end_to_end(tmp_path) -> None:
    uris = make_members(tmp_path, overconfidence=3.0)
    out = tmp_path / "calibrate"
    summary = calibrate.run(_cfg(tmp_path), members=uris, out=str(out))
    table = json.loads((out / "calibration.json").read_text())
    assert sorted(table) == [f"{b}/fold{k}" for b in "ab" for k in range(3)]
    for row in table.values():
        assert row["temperature"] > 1.5
        assert row["nll_after"] < row["nll_before"] and row["ece_after"] < row["ece_before"]
    assert summary["pooled_ece_after"] < summary["pooled_ece_before"]
    for name in ("reliability.png", "report.md", "config.yaml", "metrics.jsonl"):
        assert (out / name).exists(), name
    assert "a/fold0" in (out / "report.md").read_text()
    assert (out / "mlflow_run_id").read_text().strip()  # the MLflow run was created


def test_calibrate_step_binned_on_s3(tmp_path, s3_bucket) -> None:
    uris = make_members(tmp_path, folds=2, backbones=("a",), n_per_class=40)
    out = f"{s3_bucket}/calibrate"
    cfg = _cfg(tmp_path, method="binned_temperature", n_temperature_bins=2)
    cfg.tracking.enabled = False
    calibrate.run(cfg, members=uris, out=out)
    from finegrain import storage

    table = json.loads(storage.read_text(f"{out}/calibration.json"))
    assert {r["method"] for r in table.values()} == {"binned_temperature"}
    assert storage.exists(f"{out}/reliability.png")


def test_calibrate_step_rejects_mismatched_classes(tmp_path) -> None:
    a = make_members(tmp_path / "x", backbones=("a",), folds=2)
    b = make_members(tmp_path / "y", backbones=("b",), folds=2, classes=[f"other_{i}" for i in range(12)])
    with pytest.raises(ValueError, match="classes differ"):
        calibrate.run(_cfg(tmp_path), members=a + b, out=str(tmp_path / "out"))
