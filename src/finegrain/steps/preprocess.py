"""Preprocess step: validate images, find duplicates, merge identical classes, flag noisy labels, assign folds.

    finegrain preprocess --config configs/sample.yaml --data data/sample --out runs/x/preprocess

Writes manifest.parquet (one row per input image, nothing dropped), classes.json, report.md (a summary for the
KFP UI), report.html (the full page, with thumbnails), summary.json and config.yaml, and logs its own MLflow run
(tagged with the data hash). Reports show paths relative to the dataset root; the manifest keeps full URIs.
Manifest conventions: `dup_group` is -1 for a row that duplicates nothing, else an id shared by every copy of one
picture (train and test rows alike) whose kind of copy is a duplicate for training (near_duplicate_action drop);
`fold_group` likewise joins every confirmed copy, drop and same_fold kinds alike: each one lands in one fold.
Only status=ok training rows get a fold, so non-representative copies, corrupt files, cross-class conflicts and
noisy labels all have fold -1 (they stay in the manifest, never in training: a second copy of a picture only
adds leakage between folds). Test rows keep status ok unless corrupt, which aborts the run after every test
file has been checked: a submission needs every test ID. A file that cannot be read (S3 down after every rerun,
missing, forbidden) is no status at all: the step fails naming it.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from finegrain import storage
from finegrain.config import Config
from finegrain.data.checks import check_dataset, dataset_aliases
from finegrain.data.fingerprint import code_version as current_code_version
from finegrain.data.fingerprint import dataset_fingerprint
from finegrain.data.layouts import DatasetError, read_dataset
from finegrain.preprocess.copies import group_copies, note_same_fold
from finegrain.preprocess.dedup.confirm import confirm_pairs
from finegrain.preprocess.dedup.search import candidate_pairs
from finegrain.preprocess.dedup.store import ThumbStore
from finegrain.preprocess.folds import assign_folds, fold_balance
from finegrain.preprocess.noise import find_noisy_labels, load_oof
from finegrain.preprocess.report import render_report
from finegrain.preprocess.report_view import relative_view, render_page
from finegrain.preprocess.statuses import assign_statuses, suggest_merges
from finegrain.preprocess.validate import scan_images
from finegrain.preprocess.workers import (
    UnreadableFilesError,
    map_batches,
    scratch_dir,
    storage_rounds,
    unreadable_message,
    worker_pool,
)
from finegrain.steps.outputs import scalars, write_step_files
from finegrain.tracking import Tracker

COLUMNS = ["image_id", "path", "split", "label", "class_name", "class_index", "sha256", "phash", "dup_group",
           "fold_group", "fold", "status", "reason", "width", "height"]  # fmt: skip


class BadTestImagesError(ValueError):
    """One or more test images cannot be used; the message lists every one and why."""


def scan_table(
    images: pd.DataFrame, cfg: Config, pool: ProcessPoolExecutor | None = None
) -> tuple[pd.DataFrame, list]:
    """Validate + hash every row's `path` (one read and one reduced-scale decode per file).

    Returns the table with sha256/nbytes/status/reason/width/height/phash columns added, and per row what the
    near-duplicate search and check work from (dedup.normalize.Picture; None for corrupt rows).
    A file whose bytes cannot be read is UnreadableFilesError, after storage_rounds(cfg) reruns for failures
    that may pass (an S3 outage): only bytes that were read can be called corrupt.
    """
    pp = cfg.preprocess
    paths = images["path"].tolist()
    # Pool workers write the thumbnails into one shared file and return them by reference (dedup.store).
    scratch = scratch_dir(pool)
    store = ThumbStore.create(len(paths), scratch) if scratch else None
    scan = functools.partial(_scan_chunk, max_pixels=pp.max_pixels, min_side=pp.min_side, store=store)
    # Files go to the workers in chunks of up to 32 (~25 ms of work), each hashed in one vectorised DCT; 8 or more
    # chunks per worker keep both busy to the end (chunks of 64 left one idle for up to ~50 ms at the end).
    size = max(1, min(32, len(paths) // (max(1, pp.workers) * 8)))
    chunks = [(i, paths[i : i + size]) for i in range(0, len(paths), size)]
    scanned = map_batches(
        scan, chunks, [len(c) for _, c in chunks], "validating + hashing", "img", pool, rounds=storage_rounds(cfg)
    )
    scans = [row for rows in scanned for row in rows]
    unread = [(p, s["reason"]) for p, s in zip(paths, scans) if s["status"] == "unread"]
    if unread:
        raise UnreadableFilesError(
            unreadable_message("validating + hashing", unread, "missing or not readable with these credentials "
                               "(a storage problem, not a data problem: nothing was marked corrupt):")
        )  # fmt: skip
    thumbs = [s.pop("thumb") for s in scans]
    table = pd.concat([images.reset_index(drop=True), pd.DataFrame(scans)], axis=1)
    return table, thumbs


def _scan_chunk(chunk: tuple[int, list[str]], max_pixels: int, min_side: int, store: ThumbStore | None) -> list:
    """scan_images on one chunk (its first row, its paths) in a worker."""
    first, paths = chunk
    return scan_images(paths, max_pixels, min_side, store=store, first_row=first)


def _check_test_images(table: pd.DataFrame) -> None:
    bad_test = table[(table["split"] == "test") & (table["status"] == "corrupt")]
    if len(bad_test):
        listing = "\n".join(f"  {r.image_id} ({r.path}): {r.reason}" for r in bad_test.itertuples())
        raise BadTestImagesError(
            f"{len(bad_test)} test image(s) unusable; the submission needs every test ID, fix or replace them:\n"
            + listing
        )


def find_candidates(
    table: pd.DataFrame, cfg: Config, thumbs: list
) -> tuple[list[tuple[int, int]], list[tuple[int, int, float]]]:
    """Exact-duplicate links (same sha256) and near-duplicate candidate pairs (dedup.search: each picture's
    near_dup_neighbours closest pictures by tiny-picture correlation, at least near_dup_min_correlation).

    Candidates are (row, row, score) between distinct file contents, best first; they still need
    confirm_candidates to become duplicates.
    """
    pp = cfg.preprocess
    usable = np.nonzero((table["status"] != "corrupt").to_numpy())[0]
    shas = table["sha256"].tolist()
    edges: list[tuple[int, int]] = []
    first_of_sha: dict[str, int] = {}
    for i in usable.tolist():
        if shas[i] in first_of_sha:
            edges.append((first_of_sha[shas[i]], i))
        else:
            first_of_sha[shas[i]] = i
    reps = np.array(sorted(first_of_sha.values()), dtype=np.int64)  # one row per distinct file content
    if len(reps) < 2:
        return edges, []
    features = np.stack([thumbs[i].tiny for i in reps])
    found = candidate_pairs(features, pp.near_dup_min_correlation, pp.near_dup_neighbours)
    return edges, [(int(reps[a]), int(reps[b]), s) for a, b, s in found]


def confirm_candidates(
    table: pd.DataFrame,
    thumbs: list,
    edges: list[tuple[int, int]],
    candidates: list[tuple[int, int, float]],
    cfg: Config,
    pool: ProcessPoolExecutor | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """dup_group and fold_group per row (-1 = unique) from the exact links plus the candidates the check
    confirms (finegrain.preprocess.copies), and the checked pairs (a, b, same, rule, similarity, changed,
    action; pairs whose pictures were already linked through other pairs are not checked)."""
    checked = confirm_pairs(thumbs, candidates, edges, cfg, pool)
    pairs = pd.DataFrame(checked, columns=["a", "b", "same", "rule", "similarity", "changed"])
    pairs["same"] = pairs["same"].astype(bool)
    return group_copies(len(table), edges, pairs, cfg.preprocess.near_duplicate_action)


def find_duplicates(
    table: pd.DataFrame, thumbs: list, cfg: Config, pool: ProcessPoolExecutor | None = None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """dup_group, fold_group per row (-1 = unique) and the confirmed/rejected near-duplicate candidate pairs."""
    edges, candidates = find_candidates(table, cfg, thumbs)
    return confirm_candidates(table, thumbs, edges, candidates, cfg, pool)


def _mark_noisy(table: pd.DataFrame, classes: list[str], cfg: Config) -> list[dict]:
    pp = cfg.preprocess
    rows = np.nonzero(((table["split"] == "train") & (table["status"] == "ok")).to_numpy())[0]
    probs, covered = load_oof(pp.noise_oof, table.loc[rows, "image_id"].tolist(), classes)
    rows, probs = rows[covered], probs[covered]
    given = table.loc[rows, "class_index"].to_numpy()
    found = []
    for flag in find_noisy_labels(probs, given, pp.noise_method, pp.noise_threshold):
        i = int(rows[flag.row])
        why = (f"noisy label ({pp.noise_method}, score {flag.score:.3f}): given {classes[flag.given]} "
               f"p={flag.p_given:.3f}, predicted {classes[flag.predicted]} p={flag.p_predicted:.3f}")  # fmt: skip
        table.at[i, "status"], table.at[i, "reason"] = "noisy", why
        found.append({"path": table.at[i, "path"], "given": classes[flag.given],
                      "predicted": classes[flag.predicted], "score": round(flag.score, 4)})  # fmt: skip
    return found


def _check_usable_classes(usable_labels: pd.Series, classes: list[str]) -> list[str]:
    """DatasetError when fewer than 2 classes keep a training image; a warning per class that keeps none."""
    usable = set(usable_labels)
    if len(usable) < 2:
        raise DatasetError(
            f"only {len(usable)} class(es) keep a usable training image once corrupt files, duplicates and "
            f"conflicts are set aside ({sorted(usable)[:10]}): a classifier needs at least 2; see the statuses "
            "in the manifest, or add images"
        )
    return [
        f"class {c!r} keeps no usable training image (each is corrupt, a duplicate or a conflict): the model "
        "will never predict it"
        for c in classes
        if c not in usable
    ]


def _write_parquet(table: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    # Fixed writer settings and no index: a rerun on the same data gives byte-identical files.
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), buf, compression="zstd")
    return buf.getvalue()


def run(cfg: Config, data: str, out: str, data_hash: str = "", code_version: str = "") -> dict:
    """Run the preprocess step on the dataset at `data`, writing its outputs to `out`; returns summary counts.

    data_hash / code_version: what the pipeline's plan computed (tagged on the MLflow run); computed here when
    not given, so a step run by hand records the same.
    """
    pp = cfg.preprocess
    with worker_pool(pp.workers) as pool:
        ds = read_dataset(data, layout=cfg.data.layout, extensions=cfg.data.extensions)
        # Before any image is read: a dataset that cannot train or make a submission fails in seconds.
        notes = check_dataset(ds, cfg.data.folds, cfg.data.aliases)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        table, thumbs = scan_table(ds.images.reset_index(drop=True), cfg, pool)
        _check_test_images(table)
        aliases, _ = dataset_aliases(cfg.data.aliases, ds.classes)
        table["class_name"] = [
            aliases.get(lbl, lbl) if s == "train" else "" for lbl, s in zip(table.label, table.split)
        ]
        table["dup_group"], table["fold_group"], pairs = find_duplicates(table, thumbs, cfg, pool)
    suggestions = suggest_merges(table, pp.suggest_merge_fraction)
    if pp.apply_suggested_merges:
        for s in suggestions:
            aliases[s["alias"]] = s["canonical"]
            aliases = {a: (s["canonical"] if c == s["alias"] else c) for a, c in aliases.items()}
        table["class_name"] = [
            aliases.get(lbl, lbl) if s == "train" else "" for lbl, s in zip(table.label, table.split)
        ]
    conflicts = assign_statuses(table, pp.drop_cross_class_conflicts)
    note_same_fold(table, pairs)

    classes = sorted({c for c in table["class_name"] if c})
    index = {c: i for i, c in enumerate(classes)}
    table["class_index"] = [index.get(c, -1) for c in table["class_name"]]
    noisy = _mark_noisy(table, classes, cfg) if pp.noise_oof else []

    train_ok = np.nonzero(((table["split"] == "train") & (table["status"] == "ok")).to_numpy())[0]
    folds, fold_warnings = assign_folds(
        table.loc[train_ok, "class_name"].tolist(), table.loc[train_ok, "fold_group"].tolist(), cfg.data.folds,
        cfg.data.seed,
    )  # fmt: skip
    fold_warnings = _check_usable_classes(table.loc[train_ok, "class_name"], classes) + fold_warnings
    table["fold"] = -1
    table.loc[train_ok, "fold"] = folds
    manifest = table[COLUMNS].astype({"class_index": "int64", "dup_group": "int64", "fold_group": "int64",
                                      "fold": "int64", "width": "int64", "height": "int64"})  # fmt: skip
    classes_json = {"classes": classes, "aliases": dict(sorted(aliases.items())),
                    "submission_columns": list(ds.submission_columns), "layout": ds.layout,
                    "test_ids": list(ds.test_ids)}  # fmt: skip
    balance = fold_balance(manifest.loc[train_ok, "class_name"], folds, cfg.data.folds)
    shown, shown_conflicts, shown_noisy = relative_view(manifest, conflicts, noisy, ds.root)
    report = render_report(shown, ds, pairs, shown_conflicts, suggestions, shown_noisy, balance, fold_warnings, cfg)
    page = render_page(manifest, ds, pairs, conflicts, suggestions, noisy, balance, fold_warnings, cfg)
    counts = manifest["status"].value_counts()
    data_hash = data_hash or dataset_fingerprint(data)  # after read_dataset: it names a missing root best
    summary = {
        "out": out, "layout": ds.layout, "images": len(manifest), "train": int((manifest.split == "train").sum()),
        "test": int((manifest.split == "test").sum()), "classes": len(classes),
        "status": {k: int(counts.get(k, 0)) for k in ("ok", "duplicate", "near_duplicate", "corrupt",
                                                       "cross_class_conflict", "noisy")},
        "dup_groups": int(manifest["dup_group"].max() + 1), "fold_groups": int(manifest["fold_group"].max() + 1),
        # confirmed near copies whose kind says same_fold: both kept for training, in one fold
        "kept_in_one_fold": int((pairs["action"] == "same_fold").sum()) if len(pairs) else 0,
        "suggested_merges": len(suggestions),
        "training_rows": len(train_ok), "folds": cfg.data.folds, "warnings": fold_warnings,
        "data_hash": data_hash,
    }  # fmt: skip
    with storage.output_dir(out) as local:
        (local / "manifest.parquet").write_bytes(_write_parquet(manifest))
        (local / "classes.json").write_text(
            json.dumps(classes_json, ensure_ascii=False, indent=2) + "\n", "utf-8"
        )
        (local / "report.md").write_text(report, encoding="utf-8")
        (local / "report.html").write_text(page, encoding="utf-8")
        write_step_files(local, cfg, summary)
        # Preprocess is the step cached across pipeline runs, so its MLflow run stands on its own (a parent
        # run id input would change every run and defeat the cache); it is tagged with the data hash.
        with Tracker(cfg.tracking, "preprocess", tags={"finegrain.data_hash": data_hash}) as tracker:
            tracker.log_params({"data_uri": data, "code_version": code_version or current_code_version()})
            tracker.log_metrics(scalars(summary))
            tracker.log_artifacts(local, "preprocess")
    return summary
