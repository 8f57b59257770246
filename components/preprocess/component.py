"""Preprocess: validate, de-duplicate, merge identical classes, assign folds."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def preprocess(
    config_text: str,
    data_uri: str,
    data_hash: str,
    code_version: str,
    work_root: str,
    result: Output[Artifact],
    report: Output[Markdown],
    page: Output[HTML],
) -> str:
    """Run finegrain.steps.preprocess; `data_hash` and `code_version` are cache keys, not used otherwise.

    The UI gets the Markdown summary (`report`) and the full page with thumbnails (`page`)."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_preprocess(
        config_text,
        data_uri,
        work_root,
        result.path,
        report.path,
        result.metadata,
        data_hash=data_hash,
        code_version=code_version,
        page_path=page.path,
    )
