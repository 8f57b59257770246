"""Regroup step: find groups of confusable classes from the members' out-of-fold embeddings and predictions.

    finegrain regroup --members out/train/convnext/fold0 --members ... --out out/regroup

Embeddings of different backbones live in different spaces, so each backbone's OOF rows (all folds
concatenated) give their own class-distance matrix and the matrices are averaged; the confusion part uses the
OOF probabilities of every member. Writes `groups.json` ({"groups": [[class, ...]], "class_to_group": {class:
gid}}, canonical names), `tsne.png`, `tsne.html` (self-contained, for the KFP UI), `report.md`, `config.yaml`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from finegrain import storage
from finegrain.config import Config
from finegrain.metrics import softmax
from finegrain.posthoc.members import Member, load_members
from finegrain.posthoc.regrouping import Regrouper, groups_html, plot_groups
from finegrain.steps.outputs import write_step_files
from finegrain.tracking import Tracker


def _by_backbone(members: list[Member]) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = {}
    for m in members:
        if m.oof_embeddings is None:
            raise ValueError(f"{storage.join(m.uri, 'oof.npz')}: no 'embeddings' array; regroup needs them")
        out.setdefault(m.backbone, []).append(m)
    return out


def _report(rg: Regrouper, backbones: dict[str, int], plot: dict, seconds: float) -> str:
    names = [str(c) for c in rg.classes_]
    within = rg.within_group_confusion()
    multi = [(g, grp) for g, grp in enumerate(rg.groups_) if len(grp) > 1]
    lines = [
        "# Regroup",
        "",
        (
            f"{rg.n_classes_} classes -> {len(rg.groups_)} groups ({len(multi)} with more than one class, "
            f"{len(rg.groups_) - len(multi)} singletons); fitted in {seconds:.1f} s."
        ),
        f"Embedding spaces (OOF rows): {', '.join(f'{b} ({n})' for b, n in backbones.items())}.",
        (
            f"Distance = (1 - {rg.confusion_weight}) x centroid cosine distance + {rg.confusion_weight} x "
            f"(1 - pair confusion), average linkage, threshold {rg.distance_threshold}."
        ),
        "",
        "Within-group confusion = mean OOF probability a group's images give to the other classes of the group.",
        "",
        "| group | classes | within-group confusion | members |",
        "|---:|---:|---:|---|",
    ]
    for g, grp in multi:
        lines.append(f"| {g} | {len(grp)} | {within[g]:.4f} | {', '.join(names[c] for c in grp)} |")
    if not multi:
        lines.append("| - | - | - | no class was merged with another |")
    if rg.pair_confusion_ is not None and multi:
        lines += ["", "## Pair confusion inside groups", "", "| group | class A | class B | pair confusion |"]
        lines.append("|---:|---|---|---:|")
        for g, grp in multi:
            for i, a in enumerate(grp):
                for b in grp[i + 1 :]:
                    lines.append(f"| {g} | {names[a]} | {names[b]} | {rg.pair_confusion_[a, b]:.4f} |")
    lines += ["", "![t-SNE](tsne.png)", ""]
    if plot["labels"] == "indices":
        # No Hangul font installed: the plot is labelled #index; this is the key.
        lines += ["## Plot labels (no Hangul font installed, labels are class indices)", ""]
        lines += ["| label | class |", "|---|---|"] + [f"| #{c} | {names[c]} |" for c in plot["labelled"]]
        lines.append("")
    return "\n".join(lines)


def run(cfg: Config, members: list[str], out: str, parent_run_id: str | None = None) -> dict:
    """Cluster classes into confusable groups; write groups.json, tsne.png, tsne.html, report.md,
    summary.json, config.yaml."""
    loaded = load_members(members)
    classes = loaded[0].classes
    per_backbone = _by_backbone(loaded)
    embeddings, labels = [], []
    for ms in per_backbone.values():
        embeddings.append(np.concatenate([m.oof_embeddings for m in ms]).astype(np.float32))
        labels.append(np.concatenate([m.oof_labels for m in ms]))
    probs = np.concatenate([softmax(m.oof_logits) for m in loaded])
    prob_labels = np.concatenate([m.oof_labels for m in loaded])

    rc = cfg.regroup
    rg = Regrouper(
        pca_dims=rc.pca_dims,
        perplexity=rc.perplexity,
        tsne_backend=rc.tsne_backend,
        distance_threshold=rc.distance_threshold,
        confusion_weight=rc.confusion_weight,
        seed=rc.seed,
        classes=classes,
    )
    t0 = time.perf_counter()
    rg.fit(embeddings, labels, probs, prob_labels)
    seconds = time.perf_counter() - t0

    groups = {
        "groups": rg.group_names_,
        "class_to_group": {c: int(g) for c, g in zip(classes, rg.class_to_group_)},
    }
    n_multi = sum(len(g) > 1 for g in rg.groups_)
    summary = {
        "groups": storage.join(out, "groups.json"),
        "n_classes": len(classes),
        "n_groups": len(rg.groups_),
        "n_multi_class_groups": n_multi,
        "largest_group": max((len(g) for g in rg.groups_), default=0),
        "backbones": {b: len(y) for b, y in zip(per_backbone, labels)},
        "fit_seconds": round(seconds, 2),
    }
    with storage.output_dir(out) as local:
        local = Path(local)
        (local / "groups.json").write_text(json.dumps(groups, indent=2, ensure_ascii=False), encoding="utf-8")
        plot = plot_groups(rg, str(local / "tsne.png"), label_top=rc.label_top)
        (local / "tsne.html").write_text(groups_html(rg, str(local / "tsne.png")), encoding="utf-8")
        (local / "report.md").write_text(_report(rg, summary["backbones"], plot, seconds), encoding="utf-8")
        summary["plot_labels"] = plot["labels"]
        write_step_files(local, cfg, summary)
        with Tracker(cfg.tracking, "regroup", parent_run_id=parent_run_id, local_dir=out) as tracker:
            tracker.log_params({"regroup": rc.model_dump(), "members": [m.key for m in loaded]})
            tracker.log_metrics(
                {
                    "n_groups": len(rg.groups_),
                    "n_multi_class_groups": n_multi,
                    "largest_group": summary["largest_group"],
                    "fit_seconds": seconds,
                }
            )
            for name in ("groups.json", "tsne.png", "tsne.html", "report.md"):
                tracker.log_artifact(local / name)
    return summary
