"""Compile the training pipeline and submit it to a Kubeflow Pipelines cluster.

    python pipelines/submit.py --config configs/hecto.yaml run        # upload a version, start a run
    python pipelines/submit.py --config configs/hecto.yaml schedule   # a recurring run (pipeline.schedule_cron)

Environment: KFP_HOST (the KFP API endpoint, e.g. https://kubeflow.example.com/pipeline), KFP_TOKEN (optional
bearer token; in-cluster service-account tokens also work), KFP_NAMESPACE (the profile namespace; default
pipeline.namespace), IMAGE_TAG (optional: train on `$REGISTRY/finegrain:<IMAGE_TAG>-cuda`, every other step on
`...-cpu`, REGISTRY defaulting to the repository of pipeline.base_image).

Nothing about the data is computed here: the run (or each run of a schedule) fingerprints the dataset itself,
so a recurring run retrains when the data changed. The run's parameters are the config file's text and the
`--set` overrides as a list, both editable in the Kubeflow UI.
This needs a reachable cluster; nothing here is exercised against one in the test suite.
"""

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

from finegrain.config import Config, config_to_text, load_config
from finegrain.data.fingerprint import code_version
from pipelines.training import compile_pipeline, member_items

MISSING_HOST = (
    "KFP_HOST is not set: export KFP_HOST=https://<your kubeflow>/pipeline (the KFP API endpoint; "
    "see README, Deploy to a cluster)"
)


def image_for_tag(cfg: Config, tag: str, registry: str = "", variant: str = "cuda") -> str:
    """The image built for one commit: `$REGISTRY/finegrain:<tag>-<variant>` (registry from the config's
    base_image when REGISTRY is not set)."""
    repo = f"{registry.rstrip('/')}/finegrain" if registry else cfg.pipeline.base_image.rsplit(":", 1)[0]
    return f"{repo}:{tag}-{variant}"


def run_parameters(file_cfg: Config, overrides: list[str], run_name: str) -> dict:
    """The pipeline parameters of one run, as a person would edit them in the UI: the config file's text and
    the overrides. data_uri is left empty (= the config's data.uri); hashes and work root are the run's own."""
    return {
        "config_text": config_to_text(file_cfg),
        "overrides": list(overrides),
        "data_uri": "",
        "run_name": run_name,
    }


def kfp_host() -> str:
    """KFP_HOST, or exit with the one line that says how to set it."""
    host = os.environ.get("KFP_HOST")
    if not host:
        raise SystemExit(MISSING_HOST)
    return host


def make_client(cfg: Config, host: str):
    import kfp

    return kfp.Client(
        host=host,
        existing_token=os.environ.get("KFP_TOKEN") or None,
        namespace=os.environ.get("KFP_NAMESPACE", cfg.pipeline.namespace),
    )


def upload_version(client, cfg: Config, package: Path, version_name: str) -> tuple[str, str]:
    """Upload the compiled YAML as a new version of the pipeline (creating the pipeline the first time)."""
    name = cfg.pipeline.name
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=name, description="finegrain training")
        pipeline_id = pipeline.pipeline_id
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def experiment_id(client, cfg: Config) -> str:
    """Reuse the config's experiment or create it."""
    namespace = os.environ.get("KFP_NAMESPACE", cfg.pipeline.namespace)
    try:
        exp = client.get_experiment(experiment_name=cfg.pipeline.experiment, namespace=namespace)
    except Exception:  # noqa: BLE001 - the client raises a bare ValueError when it does not exist
        exp = client.create_experiment(cfg.pipeline.experiment, namespace=namespace)
    return exp.experiment_id


def submit(client, cfg: Config, action: str, params: dict, package: Path, host: str = "") -> str:
    version_name = f"{code_version()}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    pipeline_id, version_id = upload_version(client, cfg, package, version_name)
    exp_id = experiment_id(client, cfg)
    job_name = f"{cfg.pipeline.name}-{version_name}"
    if action == "schedule":
        job = client.create_recurring_run(
            experiment_id=exp_id,
            job_name=job_name,
            cron_expression=cfg.pipeline.schedule_cron,
            pipeline_id=pipeline_id,
            version_id=version_id,
            params=params,
            max_concurrency=1,
            service_account=cfg.pipeline.service_account,
        )
        return f"recurring run {job.recurring_run_id} ({cfg.pipeline.schedule_cron})"
    run = client.run_pipeline(
        experiment_id=exp_id,
        job_name=job_name,
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=params,
        service_account=cfg.pipeline.service_account,
    )
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "schedule"])
    parser.add_argument("--config", default="configs/hecto.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    # Before the config is read (it may live on S3) or anything is compiled: without a cluster, nothing to do.
    host = kfp_host()
    overrides = list(args.overrides)
    cfg = load_config(args.config, overrides)  # fails here, not in the cluster, on a bad key
    if os.environ.get("IMAGE_TAG"):
        tag, registry = os.environ["IMAGE_TAG"], os.environ.get("REGISTRY", "")
        cfg.pipeline.base_image, cfg.pipeline.cpu_image = (
            image_for_tag(cfg, tag, registry, "cuda"), image_for_tag(cfg, tag, registry, "cpu")
        )
    params = run_parameters(load_config(args.config), overrides, cfg.pipeline.name)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg, Path(tmp) / "training.yaml")
        print(f"compiled ({len(member_items(cfg))} members by default; each run plans its own) on "
              f"{cfg.pipeline.base_image} / {cfg.pipeline.resolved_cpu_image()}")
        client = make_client(cfg, host)
        print(submit(client, cfg, args.action, params, package, host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
