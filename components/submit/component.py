"""Submit: write and validate submission.csv in the sample's exact column order."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def submit(
    config_text: str,
    ensemble: Input[Artifact],
    data_uri: str,
    work_root: str,
    submission: Output[Dataset],
    check: Output[Markdown],
) -> str:
    """Run finegrain.steps.submit; the UI gets the file and the check summary."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_submit(
        config_text, ensemble.path, data_uri, work_root, submission.path, check.path, submission.metadata
    )
