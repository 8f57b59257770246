"""Train one (backbone, fold) member on a GPU node; resumes from its checkpoint at the work URI on retry."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Input, Metrics, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    config_text: str,
    preprocess: Input[Artifact],
    backbone: str,
    fold: str,  # loop items of dicts arrive as strings
    work_root: str,
    parent_run: Input[Artifact],
    member: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> str:
    """Run finegrain.steps.train for one member and publish its metrics to the KFP UI."""
    from finegrain import component_io

    return component_io.run_train(
        config_text,
        preprocess.path,
        backbone,
        fold,
        work_root,
        component_io.parent_run_id(parent_run.path),
        member.path,
        member.metadata,
        metrics,
        confusion,
    )
