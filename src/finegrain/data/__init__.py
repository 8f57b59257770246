"""Datasets: the Hecto and ImageFolder layouts, the one decoder, fingerprints, transforms, loaders."""

from finegrain.data.layouts import Dataset, DatasetError, detect_layout, read_dataset

__all__ = ["Dataset", "DatasetError", "detect_layout", "read_dataset"]
