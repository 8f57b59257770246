"""finegrain: train, calibrate and ensemble fine-grained image classifiers as one Kubeflow pipeline."""

import os

# albumentations checks PyPI for a newer version at import; offline clusters and CI must not phone home.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
