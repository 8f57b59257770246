"""Opens the pipeline's parent MLflow run; every later step nests its own run under it."""

from kfp import dsl

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def start_run(config_text: str, run_name: str, data_hash: str, code_version: str) -> str:
    """Create the parent MLflow run and return its id ("" when tracking is off or unreachable)."""
    from finegrain import component_io

    return component_io.start_parent_run(config_text, run_name, data_hash, code_version)
