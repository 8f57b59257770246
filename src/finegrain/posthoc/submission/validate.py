"""Check a written submission against the sample's columns and test.csv's IDs before anyone scores it.

checks = validate_submission("out/submit/submission.csv", ["ID", *columns], test_ids)   # or SubmissionError
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from finegrain.posthoc.submission.errors import SubmissionError

ROW_SUM_TOLERANCE = 1e-6


def _read(obj: str | Path | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(obj, pd.DataFrame):
        return obj
    try:
        # Everything as text first: a non-numeric cell must be reported, not silently turned into NaN.
        return pd.read_csv(obj, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SubmissionError(f"{what} {obj}: cannot be read as a UTF-8 CSV ({exc})") from None


def _check_columns(got: list[str], want: list[str]) -> str:
    if got == want:
        return ""
    missing, extra = [c for c in want if c not in got], [c for c in got if c not in want]
    if missing or extra:
        return f"missing columns {missing[:5]}, unexpected columns {extra[:5]}"
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    return f"columns reordered: position {first} is {got[first]!r}, the sample has {want[first]!r}"


def _check_ids(ids: list[str], test_ids: list[str]) -> str:
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        return f"duplicated IDs {dup[:5]}"
    missing, extra = sorted(set(test_ids) - set(ids)), sorted(set(ids) - set(test_ids))
    if missing or extra:
        return f"missing IDs {missing[:5]} ({len(missing)}), unexpected IDs {extra[:5]} ({len(extra)})"
    if ids != test_ids:
        first = next(i for i, (a, b) in enumerate(zip(ids, test_ids)) if a != b)
        return f"IDs not in test.csv order: row {first} is {ids[first]!r}, test.csv has {test_ids[first]!r}"
    return ""


def validate_submission(
    submission: str | Path | pd.DataFrame,
    sample: str | Path | pd.DataFrame | Sequence[str],
    test_ids: Sequence[str],
    tolerance: float = ROW_SUM_TOLERANCE,
) -> dict:
    """Check a submission against the sample's columns and test.csv's IDs; SubmissionError lists what failed.

    sample: the sample submission (path or frame) or just its column list (`ID` first).
    """
    frame = _read(submission, "submission")
    want = (
        list(sample)
        if not isinstance(sample, (str, Path, pd.DataFrame))
        else list(_read(sample, "sample").columns)
    )
    got = [str(c) for c in frame.columns]
    checks: dict[str, dict] = {}

    def record(name: str, problem: str) -> None:
        checks[name] = {"ok": not problem, "detail": problem or "ok"}

    record("columns", _check_columns(got, [str(c) for c in want]))
    ids = frame["ID"].astype(str).tolist() if "ID" in frame.columns else []
    record(
        "ids", "no ID column" if "ID" not in frame.columns else _check_ids(ids, [str(i) for i in test_ids])
    )
    values = frame[[c for c in frame.columns if c != "ID"]]
    numeric_frame = values.apply(pd.to_numeric, errors="coerce")
    numeric = numeric_frame.to_numpy(dtype=np.float64)
    # A cell is non-numeric when it failed to parse and was not literally NaN (an empty cell counts as bad).
    bad_text = np.zeros(numeric.shape, dtype=bool)
    for j, col in enumerate(values.columns):
        if not pd.api.types.is_numeric_dtype(values[col]):
            literal_nan = values[col].astype(str).str.strip().str.lower().isin(["nan", "+nan", "-nan"])
            bad_text[:, j] = (numeric_frame[col].isna() & ~literal_nan).to_numpy()
    if bad_text.any():
        r, c = map(int, np.argwhere(bad_text)[0])
        cell = values.iloc[r, c]
        record(
            "numeric",
            f"{int(bad_text.sum())} non-numeric cells, e.g. row {r} column {values.columns[c]!r}: {cell!r}",
        )
    else:
        record("numeric", "")
    nonfinite = ~np.isfinite(numeric) & ~bad_text
    record("finite", f"{int(nonfinite.sum())} NaN/inf cells" if nonfinite.any() else "")
    negative = numeric < 0
    record(
        "non_negative",
        f"{int(negative.sum())} negative cells, min {np.nanmin(numeric):.3g}" if negative.any() else "",
    )
    finite = np.where(np.isfinite(numeric), numeric, 0.0)
    sums = finite.sum(axis=1)
    off = (np.abs(sums - 1.0) > tolerance) & ~(nonfinite | bad_text).any(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0) * off)) if off.any() else 0
    record(
        "row_sums",
        f"{int(off.sum())} rows do not sum to 1 (+-{tolerance:g}), e.g. row {worst}: {sums[worst]:.6g}"
        if off.any()
        else "",
    )
    result = {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "n_rows": len(frame),
        "n_columns": len(frame.columns),
        "row_sum_min": float(sums.min()) if len(sums) else math.nan,
        "row_sum_max": float(sums.max()) if len(sums) else math.nan,
    }
    if not result["ok"]:
        failed = "; ".join(f"{k}: {v['detail']}" for k, v in checks.items() if not v["ok"])
        err = SubmissionError(f"invalid submission: {failed}")
        err.result = result
        raise err
    return result


def check_json(result: dict, extra: dict) -> str:
    """The submission_check.json text: the validator's result plus how aliases were handled."""
    return json.dumps({**result, **extra}, indent=2, ensure_ascii=False)
