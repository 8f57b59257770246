"""Submit: write and validate submission.csv in the sample's exact column order; register the ensemble."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def submit(
    config_text: str,
    ensemble: Input[Artifact],
    calibration: Input[Artifact],
    members: Input[List[Artifact]],
    data_uri: str,
    work_root: str,
    submission: Output[Dataset],
    check: Output[Markdown],
) -> str:
    """Run finegrain.steps.submit; the UI gets the check summary; the ensemble goes to the model registry."""
    from finegrain.orchestration import kfp_adapter as component_io

    return component_io.run_submit(
        config_text,
        ensemble.path,
        calibration.path,
        [m.path for m in members],
        data_uri,
        work_root,
        submission.path,
        check.path,
        submission.metadata,
    )
