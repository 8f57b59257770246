"""Thin KFP v2 components, one per step: each maps its parameters and artifacts to a `finegrain.steps.*` call
through `finegrain.orchestration.kfp_adapter`.

All components run on one image (`images/`). The image named here is only the default baked in at import;
`pipelines/training.py` swaps in `pipeline.base_image` from the config when it builds the pipeline.
"""

DEFAULT_IMAGE = "finegrain:latest-cpu"
