"""Plan the run (never cached): resolve the config, fingerprint the data, derive the work root and the fan-out."""

from kfp import dsl
from kfp.dsl import OutputPath

from components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_run(
    config_text: str,
    overrides: list,
    data_uri: str,
    config: OutputPath(str),
    data: OutputPath(str),
    data_hash: OutputPath(str),
    code_version: OutputPath(str),
    work_root: OutputPath(str),
) -> list:
    """Run finegrain.orchestration.plan.plan_run; returns the [{backbone, fold}] items the train loop fans out over.

    The list is the return value (output `Output`) because kfp.local 2.17 resolves a ParallelFor over a task
    output only when that output is named `Output`."""
    from pathlib import Path

    from finegrain.orchestration.plan import plan_run as plan

    p = plan(config_text, overrides, data_uri)
    for path, key in (
        (config, "config"), (data, "data"), (data_hash, "data_hash"), (code_version, "code_version"),
        (work_root, "work_root"),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(p[key], encoding="utf-8")
    print(f"data {p['data']} (hash {p['data_hash']}), work root {p['work_root']}, {len(p['members'])} members")
    return p["members"]
