"""Fitting after training: calibration, ensembling, regrouping, the submission file, member outputs."""
