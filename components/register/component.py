"""Register: log the calibrated ensemble as an MLflow pyfunc model and register it in the model registry."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register(
    spec: str,
    members: Input[List[Artifact]],
    calibration: Input[Artifact],
    ensemble: Input[Artifact],
    result: Output[Artifact],
    report: Output[Markdown],
) -> str:
    """Run finegrain.steps.register; the UI gets the registered name and version (or why none)."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_register(
        spec, [m.path for m in members], calibration.path, ensemble.path, result.path, report.path,
        result.metadata,
    )
