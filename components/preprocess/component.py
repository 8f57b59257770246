"""Preprocess: validate, de-duplicate, merge identical classes, assign folds."""

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def preprocess(spec: str, result: Output[Artifact], report: Output[Markdown]) -> str:
    """Run finegrain.steps.preprocess; its spec (data hash, data and preprocess settings) is its cache key."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_preprocess(spec, result.path, report.path, result.metadata)
