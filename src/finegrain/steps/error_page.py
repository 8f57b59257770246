"""Error-analysis pages: predictions analysed by `finegrain.posthoc.error_analysis`, shown by
`finegrain.reports.error_analysis` with thumbnails of the images they name.

The ensemble step writes `error_analysis.html` from its out-of-fold predictions (paths found through the
preprocess manifest, image_id -> path); the train step writes `errors.html` for its validation fold. Without
paths the page is the same, with grey boxes instead of pictures and a note saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from finegrain import storage
from finegrain.data.thumbnails import display_paths, make_thumbnails, root_name
from finegrain.posthoc.error_analysis import ErrorAnalysis, analyse_errors
from finegrain.reports.error_analysis import error_analysis_page

PAGE = "error_analysis.html"


def manifest_paths(manifest: str) -> dict[str, str]:
    """{image_id: path} of a preprocess output (its prefix, or the manifest.parquet URI)."""
    uri = str(manifest).rstrip("/")
    parquet = uri if uri.endswith(".parquet") else storage.join(uri, "manifest.parquet")
    with storage.local_path(parquet) as local:
        table = pd.read_parquet(local, columns=["image_id", "path"])
    return dict(zip(table["image_id"].astype(str), table["path"].astype(str)))


def shown_ids(errors: ErrorAnalysis) -> list[str]:
    """The image ids the page shows a picture of: the confused pairs' images, then the worst images."""
    pairs = errors.pairs
    ids = [i for column in ("examples", "references") for shown in pairs[column] for i in shown]
    ids += errors.worst["image_id"].tolist()
    return list(dict.fromkeys(ids))


def error_page(
    probs: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    classes: Sequence[str],
    what: str,
    groups: Sequence[Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    paths: Mapping[str, str] | None = None,
    no_paths: str = "",
    title: str = "Error analysis (ensemble, out-of-fold)",
) -> tuple[str, ErrorAnalysis]:
    """(the page, the analysis) of predictions `probs` for `labels`; `paths` ({image_id: URI}) gives the
    thumbnails, `no_paths` says why there are none when it is None. `what` names the predictions."""
    errors = analyse_errors(probs, labels, image_ids, classes, groups=groups, aliases=aliases)
    thumbs: dict[str, bytes] = {}
    shown: dict[str, str] = {}
    ids = shown_ids(errors)
    if paths is not None:
        wanted = [i for i in ids if i in paths]
        root, rel = display_paths([paths[i] for i in wanted])
        shown = dict(zip(wanted, rel))
        pictures = make_thumbnails(paths[i] for i in wanted)
        thumbs = {i: pictures[paths[i]] for i in wanted if paths[i] in pictures}
        where = f"{root_name(root)}/" if root else "their paths"
        note = f"Pictures: {len(thumbs)} of the {len(ids)} images named below, from {where}"
    else:
        note = f"No pictures: {no_paths}."
    summary = {
        "what": what, "n_images": errors.n_images, "n_classes": len(errors.classes), "accuracy": errors.accuracy,
        "log_loss": errors.log_loss, "pictures": note,
    }  # fmt: skip
    page = error_analysis_page(
        summary, errors.per_class, errors.pairs, errors.worst, errors.groups, thumbs, shown, title=title
    )
    return page, errors


def write_error_page(
    local: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    classes: Sequence[str],
    groups: Sequence[Sequence[str]] | None,
    aliases: Mapping[str, str] | None,
    manifest: str | None,
) -> ErrorAnalysis:
    """The ensemble's page: analyse its OOF predictions, write `local/error_analysis.html`; returns the analysis."""
    page, errors = error_page(
        probs,
        labels,
        image_ids,
        classes,
        "Ensemble out-of-fold predictions (calibrated, weighted, post-processed)",
        groups=groups,
        aliases=aliases,
        paths=manifest_paths(manifest) if manifest else None,
        no_paths="the step was given no preprocess manifest (--manifest), so image ids are all it knows",
    )
    (Path(local) / PAGE).write_text(page, encoding="utf-8")
    return errors
