"""The pipeline's parent MLflow run: opened after the plan, ended by the exit handler with the final status.

Every later step nests its own run under the parent; they read its id from the run's directory, found through
their key's claim (see finegrain.orchestration.parent_run and .records), so the id is never a task input that
would defeat the cache. The exit task also applies `pipeline.retention_runs` (finegrain.orchestration.gc).
"""

from kfp import dsl

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def start_run(
    config_text: str, run_name: str, data_hash: str, code_version: str, run_root: str, kfp_run_id: str
) -> str:
    """Create the parent MLflow run tagged with the KFP run id; returns its id ("" when tracking is off)."""
    from finegrain.orchestration.parent_run import start_parent_run

    return start_parent_run(config_text, run_name, data_hash, code_version, run_root, kfp_run_id)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def end_run(config_text: str, overrides: list, kfp_run_id: str, status: dsl.PipelineTaskFinalStatus) -> str:
    """Exit task: end the parent run FINISHED, FAILED or KILLED as the pipeline ended, mark the run ended and,
    after a run that succeeded, delete the step outputs that `pipeline.retention_runs` no longer keeps.

    An exit task may take no other task's output, so it resolves the config from the pipeline's own
    parameters and finds the parent run by its KFP run id tag, and the run's directory by its KFP run id."""
    from finegrain.orchestration.gc import end_run_and_collect
    from finegrain.orchestration.parent_run import end_parent_run

    ended = end_parent_run(config_text, overrides, kfp_run_id, status.state)
    end_run_and_collect(config_text, overrides, kfp_run_id, status.state)
    return ",".join(ended)
