"""Calibrate: one temperature per member, fitted by NLL on its out-of-fold logits."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def calibrate(
    spec: str,
    members: Input[List[Artifact]],
    result: Output[Artifact],
    page: Output[HTML],
    metrics: Output[Metrics],
) -> str:
    """Run finegrain.steps.calibrate; the UI gets the reliability diagram and the before/after table."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_calibrate(
        spec, [m.path for m in members], result.path, page.path, result.metadata, metrics
    )
