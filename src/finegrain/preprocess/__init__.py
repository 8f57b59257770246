"""Preprocessing: validate and hash every image, find duplicates, statuses, folds, the report."""
