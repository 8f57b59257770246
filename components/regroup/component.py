"""Regroup: t-SNE + agglomerative clustering of out-of-fold embeddings into confusable class groups."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def regroup(spec: str, members: Input[List[Artifact]], result: Output[Artifact], page: Output[HTML]) -> str:
    """Run finegrain.steps.regroup over every member's out-of-fold embeddings."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_regroup(spec, [m.path for m in members], result.path, page.path, result.metadata)
