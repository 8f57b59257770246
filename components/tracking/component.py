"""Opens the pipeline's parent MLflow run; every later step nests its own run under it.

The run id travels as a small artifact, not an output parameter: kfp.local (2.17) replaces any task-output
parameter that enters a ParallelFor with the loop item, while artifacts pass through intact.
"""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def start_run(
    config_text: str, run_name: str, data_hash: str, code_version: str, run: Output[Artifact]
) -> str:
    """Create the parent MLflow run; its id ("" when tracking is off or unreachable) goes into `run`."""
    from finegrain import component_io

    return component_io.start_parent_run(config_text, run_name, data_hash, code_version, run.path)
