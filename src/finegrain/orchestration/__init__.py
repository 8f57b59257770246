"""Running the steps as a pipeline: the run plan, the KFP adapter, the local and docker runners."""
