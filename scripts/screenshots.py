"""`make screenshots`: every HTML page the pipeline writes, opened in headless Chromium and saved as a PNG.

    python -m scripts.screenshots                      # runs/sample (make run) + a synthetic 396-class run
    python -m scripts.screenshots --run runs/sample --classes 396 --per-class 30 --out docs/screenshots

Two sets of pages: the ones the last `make run` wrote under `--run` (skipped, with a note, when there is none),
and those of a synthetic run at `--classes` classes (tests.support.synthetic_run: the preprocess, regroup,
calibrate and ensemble steps for real on generated data, no training), to see them at a real dataset's size.
With `--mlflow` (a `sqlite:///` store, default `make run`'s), the MLflow UI's page of the latest pipeline's
parent run too, served by a throwaway `mlflow server` on a copy of the store.
Every page is also checked: it must load with a body and without a JavaScript or console error; the script
exits 1 naming the pages that did not. Chromium is Debian's `chromium` package (tests.support.browser).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.support.browser import INSTALL_HINT, check_page, chromium, screenshot

# (name, path under a `make run` output, window height): what each step writes for a person to open.
RUN_PAGES = (
    ("preprocess", "preprocess/report.html", 1800),
    ("train", "train/*/fold0/errors.html", 1600),
    ("regroup", "regroup/tsne.html", 1800),
    ("calibrate", "calibrate/calibration.html", 1000),
    ("ensemble", "ensemble/error_analysis.html", 1800),
)


def run_pages(run: Path) -> dict[str, tuple[Path, int]]:
    """{name: (page, height)} of the pages a `make run` output holds."""
    found = {}
    for name, pattern, height in RUN_PAGES:
        matches = sorted(run.glob(pattern))
        if matches:
            found[name] = (matches[0], height)
    return found


def smaller(png: Path) -> Path:
    """The screenshot in 256 colours: a third of the bytes in git, and still sharp text and thumbnails."""
    from PIL import Image

    with Image.open(png) as img:
        reduced = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    reduced.save(png, optimize=True)
    return png


def mlflow_parent_run(store: Path, png: Path) -> Path | None:
    """The MLflow UI's page of the latest parent run in the SQLite `store` (None when it holds none)."""
    from mlflow import MlflowClient

    from finegrain.orchestration.parent_run import KFP_RUN_TAG
    from tests.support.servers import MlflowServer

    with tempfile.TemporaryDirectory(prefix="fg-mlflow-") as tmp:
        server = MlflowServer(tmp, db_template=store)
        try:
            client = MlflowClient(tracking_uri=server.uri)
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(experiments, filter_string=f"tags.`{KFP_RUN_TAG}` LIKE '%'",
                                      order_by=["attributes.start_time DESC"], max_results=1)  # fmt: skip
            if not runs:
                return None
            run = runs[0].info
            url = f"{server.uri}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
            return smaller(screenshot(url, png, height=1400, wait_ms=20_000))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/sample", help="a `finegrain run --out` directory")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--classes", type=int, default=396, help="classes of the synthetic run (0: none)")
    parser.add_argument("--per-class", type=int, default=30, help="OOF images per class of the synthetic run")
    parser.add_argument(
        "--mlflow", default="sqlite:///mlruns.db", help="make run's MLflow store ('' to skip)"
    )
    args = parser.parse_args(argv)
    if chromium() is None:
        print(f"make screenshots needs Chromium: {INSTALL_HINT}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    out = Path(args.out)
    pages: dict[str, tuple[Path, int]] = {}
    if Path(args.run).is_dir():
        pages.update({f"sample-{k}": v for k, v in run_pages(Path(args.run)).items()})
    else:
        print(f"{args.run}: no run output (make run writes one); only the synthetic pages", flush=True)
    with tempfile.TemporaryDirectory(prefix="fg-screenshots-") as tmp:
        if args.classes:
            from tests.support.synthetic_run import synthetic_pages

            synthetic = synthetic_pages(Path(tmp), n_classes=args.classes, n_per_class=args.per_class)
            heights = {name: height for name, _, height in RUN_PAGES}
            pages.update({f"{args.classes}-{k}": (p, heights[k]) for k, p in synthetic.items()})
        problems = []
        for name, (page, height) in pages.items():
            problems += check_page(page)
            png = smaller(screenshot(page, out / f"{name}.png", height=height))
            print(f"{png}  ({page.stat().st_size / 1e6:.1f} MB page)", flush=True)
    store = Path(args.mlflow.removeprefix("sqlite:///")) if args.mlflow.startswith("sqlite:///") else None
    if store is not None and store.is_file():
        shot = mlflow_parent_run(store, out / "mlflow-parent-run.png")
        print(f"{shot or 'no parent run in ' + str(store)}", flush=True)
    print(f"{len(pages)} pages in {time.perf_counter() - started:.0f} s", flush=True)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":  # the preprocess step's worker pool needs the guard
    sys.exit(main())
