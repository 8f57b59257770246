"""Find groups of confusable classes from out-of-fold embeddings and predictions, and show them.

    rg = Regrouper(pca_dims=50, distance_threshold=0.5, confusion_weight=0.5).fit(emb, labels, oof_probs)
    rg.groups_            # [[0, 7], [1], [2, 5, 9], ...] class indices, one list per group
    plot_groups(rg, "tsne.png"); page = groups_html(rg, "tsne.png")

The estimator is in `regrouper`, the class distances and clustering in `distances`, the t-SNE map in `tsne`,
the picture and the page in `page`; this package is their public face.
"""

from finegrain.posthoc.regrouping.distances import (
    centroid_distance,
    cluster_classes,
    confusion_matrix_soft,
    pair_confusion,
)
from finegrain.posthoc.regrouping.page import groups_html, hangul_font, plot_groups
from finegrain.posthoc.regrouping.regrouper import Regrouper
from finegrain.posthoc.regrouping.tsne import run_tsne

__all__ = [
    "Regrouper",
    "centroid_distance",
    "cluster_classes",
    "confusion_matrix_soft",
    "groups_html",
    "hangul_font",
    "pair_confusion",
    "plot_groups",
    "run_tsne",
]
