"""Batch prediction, as three components: list the images and plan the shards, predict one shard, collect.

The listing (config, model URI, every image) travels as the plan's artifact, not as parameters: kfp.local
(2.17) replaces every task-output parameter that enters a ParallelFor with the loop item.
"""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_predict(
    config_text: str, model_uri: str, images_uri: str, out_uri: str, listing: Output[Artifact]
) -> list:
    """List the images under images_uri; returns the [{shard, start, stop}] items the shard loop fans out over
    (output `Output`: kfp.local resolves a ParallelFor over a task output only under that name)."""
    from finegrain.orchestration import kfp_predict

    return kfp_predict.run_plan(config_text, model_uri, images_uri, out_uri, listing.path, listing.metadata)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def predict_shard(listing: Input[Artifact], shard: str, start: str, stop: str, part: Output[Artifact]) -> str:
    """Predict the images [start, stop) of the listing (loop items arrive as strings)."""
    from finegrain.orchestration import kfp_predict

    return kfp_predict.run_shard(listing.path, shard, start, stop, part.path, part.metadata)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def collect_predictions(
    listing: Input[Artifact], parts: Input[List[Artifact]], predictions: Output[Dataset], report: Output[Markdown]
) -> str:
    """Concatenate the shards in input order into out_uri (and its errors file); the UI gets both."""
    from finegrain.orchestration import kfp_predict

    return kfp_predict.run_collect(
        listing.path, [p.path for p in parts], predictions.path, report.path, predictions.metadata
    )
