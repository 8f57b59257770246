"""Ensemble: weighted soft voting of calibrated members, optionally hierarchical over the regroup groups."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ensemble(
    spec: str,
    members: Input[List[Artifact]],
    calibration: Input[Artifact],
    groups: Input[Artifact],
    result: Output[Artifact],
    report: Output[Markdown],
    metrics: Output[Metrics],
    errors: Output[HTML],
    preprocess: Input[Artifact] = None,
) -> str:
    """Run finegrain.steps.ensemble; the UI gets the weights table, the ensemble's OOF LogLoss and the
    error-analysis page (thumbnails found through preprocess's manifest)."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_ensemble(
        spec,
        [m.path for m in members],
        calibration.path,
        groups.path,
        result.path,
        report.path,
        result.metadata,
        metrics,
        preprocess_dir=preprocess.path if preprocess is not None else "",
        errors_path=errors.path,
    )
