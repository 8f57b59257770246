"""Plan the run (never cached): resolve the config, fingerprint the data, plan every task's key and reuse."""

from kfp import dsl
from kfp.dsl import Markdown, OutputPath

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_run(
    config_text: str,
    overrides: list,
    data_uri: str,
    kfp_run_id: str,
    config: OutputPath(str),
    data_hash: OutputPath(str),
    code_version: OutputPath(str),
    run_root: OutputPath(str),
    preprocess_spec: OutputPath(str),
    regroup_spec: OutputPath(str),
    calibrate_spec: OutputPath(str),
    ensemble_spec: OutputPath(str),
    submit_spec: OutputPath(str),
    register_spec: OutputPath(str),
    page: OutputPath(Markdown),
) -> list:
    """Run finegrain.orchestration.plan.plan_run; returns the [{backbone, fold, spec}] items the train loop
    fans out over. Each step gets only its own spec, so its cache key follows only what its outputs depend on;
    the UI gets the plan (every task, and why it runs or is reused) as the `page` Markdown.

    The list is the return value (output `Output`) because kfp.local 2.17 resolves a ParallelFor over a task
    output only when that output is named `Output`."""
    from pathlib import Path

    from finegrain.orchestration.plan import describe_plan, plan_markdown
    from finegrain.orchestration.plan import plan_run as plan

    p = plan(config_text, overrides, data_uri, kfp_run_id=kfp_run_id)
    outputs = {config: p["config"], data_hash: p["data_hash"], code_version: p["code_version"],
               run_root: p["run_root"], page: plan_markdown(p)}  # fmt: skip
    steps = (preprocess_spec, regroup_spec, calibrate_spec, ensemble_spec, submit_spec, register_spec)
    for path, step in zip(steps, ("preprocess", "regroup", "calibrate", "ensemble", "submit", "register")):
        outputs[path] = p["specs"][step]
    for path, text in outputs.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    print(f"run {p['run']}: data {p['data']} (hash {p['data_hash']}), {len(p['members'])} members")
    print("\n".join(describe_plan(p)))
    return p["members"]
