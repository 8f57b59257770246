"""Submit: write and validate submission.csv in the sample's exact column order."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def submit(spec: str, ensemble: Input[Artifact], submission: Output[Dataset], check: Output[Markdown]) -> str:
    """Run finegrain.steps.submit; the UI gets the file and the check summary."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_submit(spec, ensemble.path, submission.path, check.path, submission.metadata)
