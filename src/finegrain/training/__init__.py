"""Training machinery composed by `finegrain.steps.train`, one module per phase of a member: `build` (data, model,
optimisation), `checkpoint` (save, resume), `epoch` (train + evaluate one epoch), `finish` (final weights and
outputs); with the loop primitives (`loop`), weight averaging (`swa`), provenance and run-level helpers."""
