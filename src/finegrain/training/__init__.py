"""Training machinery used by `finegrain.steps.train`: the epoch loop, weight averaging and checkpoints."""
