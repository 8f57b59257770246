"""Regroup: the Regrouper recovers planted look-alike groups, uses confusion when embeddings are ambiguous,
the step writes its files, and the benchmark script runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from finegrain.config import config_from_dict
from finegrain.posthoc.regrouping import Regrouper, centroid_distance, pair_confusion
from tests.support.paths import REPO as ROOT


def planted(n_classes: int = 24, n_per_class: int = 40, dim: int = 64, seed: int = 0):
    """Embeddings whose classes come in planted groups of 1-3 look-alikes; returns (emb, labels, truth)."""
    rng = np.random.default_rng(seed)
    sizes = [3, 1, 2, 2, 1, 3, 2, 1, 3, 2, 1, 3]
    truth = np.repeat(np.arange(len(sizes)), sizes)[:n_classes]
    centres = rng.normal(0, 1, (len(sizes), dim))[truth] + rng.normal(0, 0.2, (n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    emb = centres[labels] + rng.normal(0, 0.5, (len(labels), dim))
    return emb.astype(np.float32), labels, truth


def confused_probs(labels: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OOF-like probabilities that split mass between a row's class and the other classes of its group."""
    n_classes = len(truth)
    same = truth[None, :] == truth[labels][:, None]
    logits = 2.0 * same + rng.normal(0, 0.3, (len(labels), n_classes))
    logits[np.arange(len(labels)), labels] += 0.3
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def test_recovers_planted_groups_from_embeddings():
    emb, labels, truth = planted()
    rg = Regrouper(pca_dims=20, perplexity=10, compute_tsne=False).fit(emb, labels)
    assert adjusted_rand_score(truth, rg.class_to_group_) >= 0.9
    assert sorted(c for g in rg.groups_ for c in g) == list(range(len(truth)))
    assert rg.distance_matrix_.shape == (24, 24)
    assert rg.embedding_2d_ is None


def test_recovers_groups_with_confusion_and_tsne():
    emb, labels, truth = planted(n_per_class=20, seed=1)
    probs = confused_probs(labels, truth, np.random.default_rng(1))
    rg = Regrouper(pca_dims=20, perplexity=10, seed=0).fit(emb, labels, probs)
    assert adjusted_rand_score(truth, rg.class_to_group_) >= 0.9
    assert rg.embedding_2d_.shape == (len(labels), 2)
    assert np.all(np.isfinite(rg.embedding_2d_))
    # Rows of the same group are closer in the t-SNE map than rows of different groups.
    xy, g = rg.embedding_2d_, truth[labels]
    cent = np.array([xy[g == k].mean(0) for k in range(truth.max() + 1)])
    spread = np.mean([np.linalg.norm(xy[g == k] - cent[k], axis=1).mean() for k in range(len(cent))])
    gaps = np.linalg.norm(cent[:, None] - cent[None], axis=2)[~np.eye(len(cent), dtype=bool)]
    assert np.median(gaps) > 2 * spread


def test_uses_confusion_when_embeddings_are_ambiguous():
    rng = np.random.default_rng(2)
    truth = np.repeat(np.arange(8), 2)  # 8 planted pairs
    labels = np.repeat(np.arange(16), 30)
    # Every class equally far from every other: embeddings alone cannot tell which ones pair up.
    emb = np.eye(16)[labels] * 3 + rng.normal(0, 0.3, (len(labels), 16))
    probs = confused_probs(labels, truth, rng)
    alone = Regrouper(pca_dims=16, compute_tsne=False, confusion_weight=0.8).fit(emb, labels)
    assert adjusted_rand_score(truth, alone.class_to_group_) < 0.5
    both = Regrouper(pca_dims=16, compute_tsne=False, confusion_weight=0.8).fit(emb, labels, probs)
    assert adjusted_rand_score(truth, both.class_to_group_) >= 0.9


def test_averages_distances_over_embedding_spaces():
    emb, labels, truth = planted(seed=3)
    rotated = emb @ np.linalg.qr(np.random.default_rng(3).normal(size=(64, 64)))[0]
    rg = Regrouper(pca_dims=20, compute_tsne=False).fit([emb, rotated[::-1]], [labels, labels[::-1]])
    assert adjusted_rand_score(truth, rg.class_to_group_) >= 0.9


def test_distance_helpers_are_normalised():
    emb, labels, _ = planted()
    d = centroid_distance(emb, labels, 25)  # class 24 has no rows
    assert d.max() == pytest.approx(1.0) and np.all(np.diag(d) == 0)
    assert np.all(d[24, :24] == 1.0)
    coin_flip = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    s = pair_confusion(coin_flip)
    assert s[0, 1] == pytest.approx(1.0) and s[0, 2] == 0.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="does not match"):
        Regrouper().fit(np.zeros((5, 3)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="oof_probs has"):
        Regrouper(compute_tsne=False).fit(np.random.rand(6, 3), np.arange(6) % 2, np.full((5, 2), 0.5))


def test_groups_page_lists_multi_class_groups_with_names_escaped(tmp_path):
    from finegrain.posthoc.regrouping import groups_html

    emb, labels, truth = planted()
    classes = [f"<b>class_{i}</b>" for i in range(len(truth))]
    rg = Regrouper(pca_dims=20, compute_tsne=False, classes=classes).fit(emb, labels)
    png = tmp_path / "tsne.png"
    png.write_bytes(b"\x89PNG fake")
    page = groups_html(rg, str(png), title="groups <of> cars")
    assert "<b>" not in page and "&lt;b&gt;class_0&lt;/b&gt;" in page
    assert "<title>groups &lt;of&gt; cars</title>" in page and "data:image/png;base64," in page
    n_multi = sum(len(g) > 1 for g in rg.groups_)
    assert page.count("<tr>") == 1 + n_multi
    assert f"{n_multi} multi-class groups, {len(rg.groups_) - n_multi} singleton classes." in page


def test_step_writes_groups_plot_html_report_to_s3(tmp_path, s3_bucket):
    from finegrain import storage
    from finegrain.steps import regroup
    from tests.support.synthetic_members import make_members, planted_groups

    classes = [f"현대_차종_{i:02d}" for i in range(12)]
    members = make_members(tmp_path, n_classes=12, n_per_class=20, classes=classes)
    cfg = config_from_dict(
        {
            "regroup": {"perplexity": 10, "pca_dims": 8, "label_top": 4},
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns.db", "experiment": "test-regroup"},
        }
    )
    summary = regroup.run(cfg, members, f"{s3_bucket}/regroup")
    out = storage.download_dir(f"{s3_bucket}/regroup", tmp_path / "regroup")
    logged = {p.name for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()}
    assert {"groups.json", "tsne.png", "tsne.html", "report.md"} <= logged
    groups = json.loads((out / "groups.json").read_text(encoding="utf-8"))
    assert set(groups["class_to_group"]) == set(classes)
    found = [groups["class_to_group"][c] for c in classes]
    truth = np.zeros(12, dtype=int)
    for g, grp in enumerate(planted_groups(12)):
        truth[grp] = g
    assert adjusted_rand_score(truth, found) >= 0.9
    assert summary["n_multi_class_groups"] == 4 and summary["backbones"] == {"a": 240, "b": 240}
    assert (out / "tsne.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "tsne.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and classes[0] in html
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "within-group confusion" in report and classes[0] in report
    assert (out / "config.yaml").exists()


def test_step_needs_embeddings(tmp_path):
    from finegrain.steps import regroup
    from tests.support.synthetic_members import make_members

    members = make_members(tmp_path, with_embeddings=False)
    cfg = config_from_dict({"tracking": {"enabled": False}})
    with pytest.raises(ValueError, match="no 'embeddings'"):
        regroup.run(cfg, members, str(tmp_path / "out"))


def test_bench_smoke_runs():
    cmd = [sys.executable, str(ROOT / "bench" / "regroup.py"), "--n", "400", "--dim", "32", "--classes", "20"]
    cmd += ["--perplexity", "10", "--sklearn-points", "200", "--sklearn-timeout", "60"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "finegrain Regrouper.fit" in res.stdout and "sklearn TSNE on 200 points (measured)" in res.stdout
    assert "EXTRAPOLATED" in res.stdout


def test_neighbouring_groups_get_different_colours_from_the_whole_palette():
    from finegrain.posthoc.regrouping.colours import NEIGHBOURS, PALETTE, group_colours

    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 100, size=(150, 2))  # a 400-class run has ~150 multi-class groups
    colours = group_colours(centres, list(range(150)))
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    for g, near in enumerate(np.argsort(dist, axis=1)[:, :NEIGHBOURS]):
        assert all(colours[g] != colours[int(j)] for j in near), g
    assert set(colours.values()) == set(PALETTE)
