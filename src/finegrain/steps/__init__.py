"""The pipeline steps, each a plain `run(cfg, ...)` function shared by the CLI and the KFP components."""
