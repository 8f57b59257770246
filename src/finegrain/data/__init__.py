"""Datasets: layouts (Hecto, ImageFolder; local or s3://), the sample-data generator, validation, folds, loaders."""

from finegrain.data.layouts import Dataset, DatasetError, detect_layout, read_dataset

__all__ = ["Dataset", "DatasetError", "detect_layout", "read_dataset"]
