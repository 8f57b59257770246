"""What the batch-prediction components call (components/predict): plan the shards, predict one, collect them.

The plan lists the images once and writes `listing.json` (config, model URI, IDs and URIs in input order, the
output URI) into its artifact; each shard predicts a contiguous slice of that list with finegrain.steps.predict
and writes its `predictions.csv` and `errors.csv` into its own artifact; collect orders the shards by index and
concatenates their rows, so the output is in input order whatever order the shard pods finished in.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from finegrain import storage
from finegrain.orchestration.plan import config_from_text

LISTING_FILE, SHARD_FILE = "listing.json", "shard.json"
PREDICTIONS_FILE, ERRORS_FILE = "predictions.csv", "errors.csv"


def _write_json(path: str | Path, obj: object) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _listing(listing_dir: str) -> dict:
    return json.loads(Path(listing_dir, LISTING_FILE).read_text(encoding="utf-8"))


def shard_items(n: int, per_shard: int) -> list[dict]:
    """[{shard, start, stop}] covering [0, n) in order, each at most `per_shard` long."""
    return [{"shard": i, "start": s, "stop": min(s + per_shard, n)} for i, s in enumerate(range(0, n, per_shard))]


def run_plan(
    config_text: str, model_uri: str, images_uri: str, out_uri: str, listing_dir: str, metadata: dict
) -> list[dict]:
    from finegrain.steps.predict import list_images

    cfg = config_from_text(config_text)
    model_uri = model_uri or f"models:/{cfg.tracking.register_model}@champion"
    ids, uris = list_images(images_uri, cfg.data.extensions)
    listing = {"config_text": config_text, "model_uri": model_uri, "out_uri": out_uri, "ids": ids, "uris": uris}
    _write_json(Path(listing_dir, LISTING_FILE), listing)
    items = shard_items(len(uris), cfg.predict.images_per_shard)
    metadata.update(model_uri=model_uri, images=len(uris), shards=len(items))
    print(f"{len(uris)} images under {images_uri} -> {len(items)} shards of up to {cfg.predict.images_per_shard}")
    return items


def run_shard(listing_dir: str, shard: str, start: str, stop: str, part_dir: str, metadata: dict) -> str:
    from finegrain.posthoc.submission import FLOAT_FORMAT
    from finegrain.steps.predict import frames, predict_images

    ctx = _listing(listing_dir)
    shard, start, stop = (int(float(v)) for v in (shard, start, stop))  # strings on a cluster, floats locally
    ids, uris = ctx["ids"][start:stop], ctx["uris"][start:stop]
    result = predict_images(config_from_text(ctx["config_text"]), ctx["model_uri"], uris, desc=f"shard {shard}")
    predictions, errors = frames(ids, uris, result)
    Path(part_dir).mkdir(parents=True, exist_ok=True)
    predictions.to_csv(Path(part_dir, PREDICTIONS_FILE), index=False, float_format=FLOAT_FORMAT)
    errors.to_csv(Path(part_dir, ERRORS_FILE), index=False)
    summary = {"shard": shard, "start": start, "stop": stop, "rows": len(predictions), "errors": len(errors)}
    _write_json(Path(part_dir, SHARD_FILE), summary)
    metadata.update(summary)
    return json.dumps(summary)


def run_collect(listing_dir: str, parts: list[str], out_path: str, report_path: str, metadata: dict) -> str:
    from finegrain.steps.predict import write_predictions

    ctx = _listing(listing_dir)
    ordered = sorted(parts, key=lambda d: json.loads(Path(d, SHARD_FILE).read_text(encoding="utf-8"))["shard"])
    predictions = pd.concat([_read_csv(Path(d, PREDICTIONS_FILE)) for d in ordered], ignore_index=True)
    errors = pd.concat([_read_csv(Path(d, ERRORS_FILE)) for d in ordered], ignore_index=True)
    if len(predictions) + len(errors) != len(ctx["uris"]):
        raise RuntimeError(f"shards hold {len(predictions) + len(errors)} images, the listing {len(ctx['uris'])}")
    summary = write_predictions(predictions, errors, ctx["out_uri"])
    # The Dataset artifact is the file itself (the UI offers it for download).
    storage.download_file(ctx["out_uri"], out_path)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(_markdown(ctx, summary), encoding="utf-8")
    metadata.update(predictions_uri=ctx["out_uri"], rows=summary["rows"], errors=len(errors))
    return json.dumps({k: summary[k] for k in ("predictions", "rows", "errors")})


def _read_csv(path: Path) -> pd.DataFrame:
    # IDs stay text (a numeric-looking stem must not become 1.0); probabilities parse as floats.
    return pd.read_csv(path, encoding="utf-8-sig", dtype={"ID": str, "path": str, "error": str}, keep_default_na=False)


def _cell(text: object) -> str:
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def _markdown(ctx: dict, summary: dict) -> str:
    lines = [
        "# Batch prediction", "",
        f"Model `{_cell(ctx['model_uri'])}`: {summary['rows']} of {len(ctx['uris'])} images predicted, "
        f"written to `{_cell(summary['predictions'])}`.", "",
    ]  # fmt: skip
    if summary["unreadable"]:
        lines += [f"Not predicted ({len(summary['unreadable'])}, listed in `{_cell(summary['errors'])}`):", "",
                  "| image | reason |", "|---|---|"]  # fmt: skip
        lines += [f"| {_cell(u['path'])} | {_cell(u['error'])} |" for u in summary["unreadable"]]
    return "\n".join(lines) + "\n"
