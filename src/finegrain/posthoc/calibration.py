"""Post-hoc calibration of a classifier's logits: temperature scaling, global or per confidence bin.

    scaler = TemperatureScaler().fit(oof_logits, oof_labels)
    probs = scaler.transform(test_logits)          # softmax(logits / temperature_)

Temperatures are fitted by minimising the mean negative log-likelihood over log T (bounded Brent search on
[log 0.05, log 200]: finegrain.metrics.fit_temperature) in float64 with a stable log-softmax. Dividing a row of
logits by a positive number never changes its argmax, so calibration leaves accuracy untouched.
"""

from __future__ import annotations

import math

import numpy as np

# fit_temperature lives with the metric so that training can report a tempered LogLoss without importing posthoc.
from finegrain.metrics import T_MAX, T_MIN, fit_temperature, softmax, temperature_nll
from finegrain.metrics import check_logits as _check

__all__ = [
    "T_MAX",
    "T_MIN",
    "BinnedTemperatureScaler",
    "TemperatureScaler",
    "fit_temperature",
    "make_scaler",
    "scaler_from_dict",
    "temperature_nll",
]


class TemperatureScaler:
    """One temperature for all rows (Guo et al. 2017), fitted by NLL."""

    def __init__(self, method: str = "nll") -> None:
        self.method = method

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureScaler:
        if self.method != "nll":
            raise ValueError(f"TemperatureScaler: unknown method {self.method!r}; choose 'nll'")
        self.temperature_ = fit_temperature(logits, y)
        return self

    def scale(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits (logits / T)."""
        z, _ = _check(logits)
        return z / self.temperature_

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities."""
        return softmax(self.scale(logits))

    predict_proba = transform

    def to_dict(self) -> dict:
        return {"method": "temperature", "temperature": self.temperature_}


class BinnedTemperatureScaler:
    """Separate temperatures for bins of the uncalibrated top-1 confidence (equal-count bins).

    Over-confidence is often worse for the most confident rows than for the rest; one temperature per bin
    follows that. A bin with fewer than `min_bin_size` rows uses the global temperature.
    """

    def __init__(self, n_bins: int = 3, min_bin_size: int = 50) -> None:
        self.n_bins = n_bins
        self.min_bin_size = min_bin_size

    def fit(self, logits: np.ndarray, y: np.ndarray) -> BinnedTemperatureScaler:
        z, y = _check(logits, y)
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        self.temperature_ = fit_temperature(z, y)
        conf = softmax(z).max(axis=1)
        # Interior quantile edges; duplicates (many rows at the same confidence) collapse into fewer bins.
        self.bin_edges_ = np.unique(np.quantile(conf, np.linspace(0, 1, self.n_bins + 1)[1:-1]))
        bins = self._bin_of(conf)
        temps, counts = [], []
        for b in range(len(self.bin_edges_) + 1):
            rows = bins == b
            counts.append(int(rows.sum()))
            temps.append(
                fit_temperature(z[rows], y[rows]) if rows.sum() >= self.min_bin_size else self.temperature_
            )
        self.bin_temperatures_ = np.array(temps)
        self.bin_counts_ = np.array(counts)
        return self

    def _bin_of(self, conf: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.bin_edges_, conf, side="right")

    def scale(self, logits: np.ndarray) -> np.ndarray:
        z, _ = _check(logits)
        bins = self._bin_of(softmax(z).max(axis=1))
        return z / self.bin_temperatures_[bins][:, None]

    def transform(self, logits: np.ndarray) -> np.ndarray:
        return softmax(self.scale(logits))

    predict_proba = transform

    def to_dict(self) -> dict:
        return {
            "method": "binned_temperature",
            "temperature": self.temperature_,
            "bin_edges": self.bin_edges_.tolist(),
            "bin_temperatures": self.bin_temperatures_.tolist(),
            "bin_counts": self.bin_counts_.tolist(),
        }


def make_scaler(method: str, n_bins: int = 3) -> TemperatureScaler | BinnedTemperatureScaler:
    """The scaler for `calibrate.method` ("temperature" or "binned_temperature")."""
    if method == "temperature":
        return TemperatureScaler()
    if method == "binned_temperature":
        return BinnedTemperatureScaler(n_bins=n_bins)
    raise ValueError(f"calibrate.method: unknown {method!r}; choose 'temperature' or 'binned_temperature'")


def scaler_from_dict(
    entry: dict, where: str = "calibration.json"
) -> TemperatureScaler | BinnedTemperatureScaler:
    """Rebuild a fitted scaler from its calibration.json entry (as written by `to_dict`)."""
    if "temperature" not in entry:
        raise ValueError(f"{where}: entry has no 'temperature'")
    t = float(entry["temperature"])
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"{where}: temperature {t} is not a positive number")
    if entry.get("method", "temperature") == "binned_temperature":
        scaler = BinnedTemperatureScaler(n_bins=len(entry["bin_temperatures"]))
        scaler.temperature_ = t
        scaler.bin_edges_ = np.asarray(entry["bin_edges"], dtype=np.float64)
        scaler.bin_temperatures_ = np.asarray(entry["bin_temperatures"], dtype=np.float64)
        scaler.bin_counts_ = np.asarray(entry.get("bin_counts", []), dtype=np.int64)
        if len(scaler.bin_temperatures_) != len(scaler.bin_edges_) + 1:
            raise ValueError(f"{where}: {len(scaler.bin_edges_)} bin edges need one more bin temperature")
        return scaler
    scaler = TemperatureScaler()
    scaler.temperature_ = t
    return scaler
