"""Train one (backbone, fold) member on a GPU node; resumes from its checkpoint at its key's URI on retry.

The member's spec (its key, settings and preprocess's key) comes inside the loop item, not as a task output:
kfp.local (2.17) replaces every task-output parameter that enters a ParallelFor with the loop item.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Metrics, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(
    preprocess: Input[Artifact],
    backbone: str,
    fold: str,  # loop items of dicts arrive as strings
    spec: str,
    member: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    errors: Output[HTML],
) -> str:
    """Run finegrain.steps.train for one member and publish its metrics to the KFP UI: the confusion matrix up
    to 40 classes, and at any size the error-analysis page of its validation fold."""
    from finegrain.orchestration import kfp_adapter

    return kfp_adapter.run_train(
        preprocess.path, backbone, fold, spec, member.path, member.metadata, metrics, confusion, errors.path
    )
