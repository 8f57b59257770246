"""Write, validate and (optionally) POST a competition submission.

    df = build_submission(probs, classes, image_ids, columns, column_to_class, test_ids, aliases, "split")
    write_submission(df, "out/submit/submission.csv")
    checks = validate_submission("out/submit/submission.csv", ["ID", *columns], test_ids)   # or SubmissionError

Columns keep the sample submission's exact strings and order (Korean names may be NFD there while our classes
are NFC). An alias column (`{alias: canonical}`, scored by the organisers as one class with its canonical)
gets mass from its canonical class:
  split      alias and canonical get p/2 each: the row still sums to 1 and the scorer's pair sum is exactly p,
             so the scored LogLoss equals the LogLoss of our canonical probabilities.
  duplicate  both get p, then the row is renormalised by 1/(1+p): the scorer's pair sum becomes 2p/(1+p)
             (>= p) and every other class shrinks by 1/(1+p), which helps rows whose true class is the pair
             and hurts all others; prefer split unless the scorer is known NOT to merge the pair.
"""

from __future__ import annotations

import http
import io
import json
import math
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pandas as pd

from finegrain.data.layouts import nfc

FLOAT_FORMAT = "%.10g"  # 10 significant digits: row sums stay within 1e-9 of 1 after the round trip
ROW_SUM_TOLERANCE = 1e-6


class SubmissionError(ValueError):
    """The submission (or its inputs) is wrong; the message says which check failed and how."""


def column_sources(
    columns: Sequence[str],
    column_to_class: Mapping[str, str],
    classes: Sequence[str],
    aliases: Mapping[str, str],
) -> tuple[list[int], list[bool]]:
    """For each submission column: the index of the class whose probability it gets, and whether it is an alias."""
    index = {nfc(c): i for i, c in enumerate(classes)}
    aliases = {nfc(a): nfc(c) for a, c in aliases.items()}
    sources, is_alias, unknown = [], [], []
    for col in columns:
        cls = nfc(column_to_class.get(col, col))
        if cls in index:
            sources.append(index[cls])
            is_alias.append(False)
        elif cls in aliases and aliases[cls] in index:
            sources.append(index[aliases[cls]])
            is_alias.append(True)
        else:
            unknown.append(col)
    if unknown:
        raise SubmissionError(
            f"submission column(s) match no predicted class or declared alias: {unknown[:10]}"
        )
    unused = sorted(set(range(len(classes))) - set(sources))
    if unused:
        lost = [classes[i] for i in unused[:10]]
        raise SubmissionError(
            f"predicted class(es) with no submission column (their mass would be lost): {lost}"
        )
    return sources, is_alias


def probs_to_columns(
    probs: np.ndarray,
    classes: Sequence[str],
    columns: Sequence[str],
    column_to_class: Mapping[str, str],
    aliases: Mapping[str, str] | None = None,
    alias_mode: str = "split",
) -> np.ndarray:
    """Class probabilities [n, C] -> submission-column probabilities [n, len(columns)], rows summing to 1.

    Shared by the submission writer and the registered MLflow model, so both give the scorer the same mass.
    """
    if alias_mode not in ("split", "duplicate"):
        raise SubmissionError(f"alias_mode {alias_mode!r}: choose split or duplicate")
    sources, _ = column_sources(columns, column_to_class, classes, aliases or {})
    p = np.asarray(probs, dtype=np.float64)
    p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
    out = p[:, sources]
    if alias_mode == "split":
        # Every class feeding k columns (itself + its aliases) has its mass shared k ways.
        fanout = np.bincount(sources, minlength=p.shape[1])
        return out / fanout[sources]
    return out / out.sum(axis=1, keepdims=True)


def build_submission(
    probs: np.ndarray,
    classes: Sequence[str],
    image_ids: Sequence[str],
    columns: Sequence[str],
    column_to_class: Mapping[str, str],
    test_ids: Sequence[str],
    aliases: Mapping[str, str] | None = None,
    alias_mode: str = "split",
) -> pd.DataFrame:
    """`ID` (in test.csv order) + the sample's columns (exact strings, its order); rows sum to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    image_ids = [str(i) for i in image_ids]
    test_ids = [str(i) for i in test_ids]
    if probs.ndim != 2 or probs.shape != (len(image_ids), len(classes)):
        raise SubmissionError(f"probs shape {probs.shape} != [{len(image_ids)} ids, {len(classes)} classes]")
    if not np.all(np.isfinite(probs)) or (probs < 0).any():
        raise SubmissionError("test probabilities contain NaN, inf or negative values")
    if len(set(image_ids)) != len(image_ids):
        raise SubmissionError("test probabilities have duplicate image_id values")
    if set(image_ids) != set(test_ids) or len(image_ids) != len(test_ids):
        only_probs = sorted(set(image_ids) - set(test_ids))[:5]
        only_csv = sorted(set(test_ids) - set(image_ids))[:5]
        raise SubmissionError(
            f"test ids differ between test_probs ({len(image_ids)}) and test.csv ({len(test_ids)}): "
            f"only in test_probs {only_probs}, only in test.csv {only_csv}"
        )
    sources, is_alias = column_sources(columns, column_to_class, classes, aliases or {})
    row_of = {i: r for r, i in enumerate(image_ids)}
    out = probs_to_columns(
        probs[[row_of[i] for i in test_ids]], classes, columns, column_to_class, aliases, alias_mode
    )
    frame = pd.DataFrame(out, columns=list(columns))
    frame.insert(0, "ID", test_ids)
    frame.attrs["aliases"] = {c: classes[s] for c, s, a in zip(columns, sources, is_alias) if a}
    return frame


def write_submission(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write as utf-8-sig CSV (Excel and the organisers' scorer read the BOM) with 10 significant digits."""
    path = Path(path)
    path.write_bytes(frame.to_csv(index=False, float_format=FLOAT_FORMAT).encode("utf-8-sig"))
    return path


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib would re-send the Authorization header to whatever host the reply
    names (and turn a 301/302/303 POST into a body-less GET that "succeeds"). Better to fail loudly."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = _shown(urljoin(req.full_url, newurl))
        raise SubmissionError(
            f"POST {_shown(req.full_url)}: HTTP {code} redirect to {target} not followed (the bearer token "
            "goes only to submit.endpoint); set submit.endpoint to the final URL"
        )


def _shown(url: str) -> str:
    """scheme://host[:port]/path: the query may hold secrets, and never the reply or the token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def post_submission(path: str | Path, endpoint: str, token: str, timeout: float = 60.0) -> dict:
    """POST the file as multipart/form-data (field `file`) with a bearer token; returns the HTTP status.

    The token goes only into the Authorization header, and only to `endpoint` itself (https, or http to
    localhost; redirects are refused). The reply body is never returned, logged or put into an error: a
    server may echo the request, token included.
    """
    from finegrain.config import endpoint_problem

    problem = endpoint_problem(endpoint)
    if problem:
        raise SubmissionError(f"submit.endpoint: {problem}")
    path = Path(path)
    boundary = f"finegrain-{uuid.uuid4().hex}"
    body = io.BytesIO()
    body.write(f"--{boundary}\r\n".encode())
    body.write(f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'.encode())
    body.write(b"Content-Type: text/csv\r\n\r\n")
    body.write(path.read_bytes())
    body.write(f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        endpoint,
        data=body.getvalue(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    shown = _shown(endpoint)
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=timeout) as resp:
            size = len(resp.read())
            return {"endpoint": shown, "status": resp.status, "reply_bytes": size}
    except urllib.error.HTTPError as exc:
        # The standard phrase for the code, not the server's reason line or body (either may echo the token).
        try:
            phrase = http.HTTPStatus(exc.code).phrase
        except ValueError:
            phrase = "(non-standard status)"
        raise SubmissionError(f"POST {shown}: HTTP {exc.code} {phrase}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SubmissionError(f"POST {shown}: {str(exc).replace(token, '***')}") from None


def check_json(result: dict, extra: dict) -> str:
    """The submission_check.json text: the validator's result plus how aliases were handled."""
    return json.dumps({**result, **extra}, indent=2, ensure_ascii=False)
