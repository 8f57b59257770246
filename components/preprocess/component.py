"""Preprocess: validate, de-duplicate, merge identical classes, assign folds."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def preprocess(spec: str, result: Output[Artifact], report: Output[Markdown], page: Output[HTML]) -> str:
    """Run finegrain.steps.preprocess; its spec (data hash, data and preprocess settings) is its cache key.

    The UI gets the Markdown summary (`report`) and the full page with thumbnails (`page`)."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_preprocess(spec, result.path, report.path, result.metadata, page_path=page.path)
