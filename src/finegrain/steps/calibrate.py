"""Calibrate step: one temperature per member, fitted by NLL on the member's out-of-fold logits.

    finegrain calibrate --members out/train/convnext/fold0 --members ... --out out/calibrate

Writes `calibration.json` ({member_key: {temperature, nll_before, nll_after, ece_before, ece_after, ...}}),
`reliability.png` (pooled reliability diagram before/after), `calibration.html` (the diagram and the table, one
self-contained page for the Kubeflow UI), `report.md`, `summary.json` and `config.yaml`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from finegrain import storage
from finegrain.config import Config
from finegrain.metrics import accuracy, ece, log_loss, reliability_bins, softmax
from finegrain.posthoc.calibration import make_scaler
from finegrain.posthoc.members import load_members
from finegrain.reports import html
from finegrain.steps.outputs import write_step_files
from finegrain.tracking import Tracker


def plot_reliability(y: np.ndarray, before: np.ndarray, after: np.ndarray, path: Path, n_bins: int) -> None:
    """Reliability diagram (accuracy vs confidence per bin) before and after calibration, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, probs, title in zip(axes, (before, after), ("before (T = 1)", "after (fitted T)")):
        b = reliability_bins(y, probs, n_bins)
        centres = (b["edges"][:-1] + b["edges"][1:]) / 2
        width = 1.0 / n_bins
        shown = b["count"] > 0
        conf, acc = b["confidence"][shown], b["accuracy"][shown]
        ax.bar(
            centres[shown],
            np.minimum(acc, conf),
            width=width * 0.9,
            color="tab:blue",
            label="min(accuracy, confidence)",
        )
        # The gap bar spans accuracy..confidence either way: red above (over-confident), green below.
        ax.bar(
            centres[shown],
            np.abs(conf - acc),
            bottom=np.minimum(acc, conf),
            width=width * 0.9,
            color=np.where(conf > acc, "tab:red", "tab:green"),
            alpha=0.4,
            label="gap (red: over-confident, green: under)",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top-1)",
            title=f"{title}: ECE {ece(y, probs, n_bins):.4f}",
        )
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Out-of-fold reliability, all members pooled ({len(y)} predictions)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(table: dict[str, dict], method: str) -> str:
    lines = [
        "# Calibration",
        "",
        f"Method: `{method}`, fitted by NLL on each member's out-of-fold logits.",
        "",
        "| member | temperature | NLL before | NLL after | ECE before | ECE after | accuracy | n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in table.items():
        lines.append(
            f"| {key} | {r['temperature']:.4f} | {r['nll_before']:.5f} | {r['nll_after']:.5f} | "
            f"{r['ece_before']:.5f} | {r['ece_after']:.5f} | {r['accuracy']:.4f} | {r['n_oof']} |"
        )
    lines += ["", "![reliability](reliability.png)", ""]
    return "\n".join(lines)


PAGE_COLUMNS = ["member", "temperature", "nll_before", "nll_after", "ece_before", "ece_after"]


def _page(table: dict[str, dict], reliability_png: Path) -> str:
    rows = [{"member": k, **{c: round(v[c], 4) for c in PAGE_COLUMNS[1:]}} for k, v in sorted(table.items())]
    body = html.png_img(reliability_png, "reliability diagram") + html.table(rows, PAGE_COLUMNS)
    return html.page("Calibration: before / after", body)


def run(cfg: Config, members: list[str], out: str, parent_run_id: str | None = None) -> dict:
    """Fit a temperature per member on its OOF logits; write calibration.json, reliability.png, report.md."""
    loaded = load_members(members)
    aliases = cfg.data.aliases or None
    n_bins = cfg.calibrate.ece_bins
    table: dict[str, dict] = {}
    pooled_y, pooled_before, pooled_after = [], [], []
    for m in tqdm(loaded, desc="calibrate", unit="member"):
        scaler = make_scaler(cfg.calibrate.method, cfg.calibrate.n_temperature_bins).fit(
            m.oof_logits, m.oof_labels
        )
        before, after = softmax(m.oof_logits), scaler.transform(m.oof_logits)
        y = m.oof_labels
        table[m.key] = {
            **scaler.to_dict(),
            "nll_before": log_loss(y, before, m.classes, aliases),
            "nll_after": log_loss(y, after, m.classes, aliases),
            "ece_before": ece(y, before, n_bins),
            "ece_after": ece(y, after, n_bins),
            "accuracy": accuracy(y, after),
            "n_oof": len(y),
            "uri": m.uri,
        }
        pooled_y.append(y)
        pooled_before.append(before)
        pooled_after.append(after)

    y_all = np.concatenate(pooled_y)
    before_all, after_all = np.concatenate(pooled_before), np.concatenate(pooled_after)
    summary = {
        "calibration": storage.join(out, "calibration.json"),
        "members": len(table),
        "method": cfg.calibrate.method,
        "temperatures": {k: round(v["temperature"], 4) for k, v in table.items()},
        "pooled_ece_before": ece(y_all, before_all, n_bins),
        "pooled_ece_after": ece(y_all, after_all, n_bins),
        "mean_nll_before": float(np.mean([v["nll_before"] for v in table.values()])),
        "mean_nll_after": float(np.mean([v["nll_after"] for v in table.values()])),
        "mean_ece_before": float(np.mean([v["ece_before"] for v in table.values()])),
        "mean_ece_after": float(np.mean([v["ece_after"] for v in table.values()])),
    }
    with storage.output_dir(out) as local:
        (local / "calibration.json").write_text(
            json.dumps(table, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        plot_reliability(y_all, before_all, after_all, local / "reliability.png", n_bins)
        (local / "report.md").write_text(_report(table, cfg.calibrate.method), encoding="utf-8")
        (local / "calibration.html").write_text(_page(table, local / "reliability.png"), encoding="utf-8")
        write_step_files(local, cfg, summary)
        with Tracker(cfg.tracking, "calibrate", parent_run_id=parent_run_id, local_dir=out) as tracker:
            tracker.log_params({"calibrate": cfg.calibrate.model_dump(), "members": [m.key for m in loaded]})
            metrics = {k: v for k, v in summary.items() if isinstance(v, float)}
            for key, row in table.items():
                safe = key.replace("/", "_")
                metrics.update(
                    {f"{safe}.temperature": row["temperature"], f"{safe}.nll_after": row["nll_after"]}
                )
            tracker.log_metrics(metrics)
            for name in ("calibration.json", "reliability.png", "calibration.html", "report.md"):
                tracker.log_artifact(local / name)
    return summary
