"""Compile the training pipeline and submit it to a Kubeflow Pipelines cluster.

    python pipelines/submit.py --config configs/hecto.yaml run        # upload a version, start a run
    python pipelines/submit.py --config configs/hecto.yaml schedule   # a recurring run (pipeline.schedule_cron)

Environment: KFP_HOST (the KFP API endpoint, e.g. https://kubeflow.example.com/pipeline), KFP_TOKEN (optional
bearer token; in-cluster service-account tokens also work), KFP_NAMESPACE (the profile namespace; default
pipeline.namespace), IMAGE_TAG (optional: run on `$REGISTRY/finegrain:<IMAGE_TAG>-cuda`, REGISTRY defaulting to
the repository of pipeline.base_image), and for the dataset
fingerprint the usual S3 variables (FINEGRAIN_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
This needs a reachable cluster; nothing here is exercised against one in the test suite.
"""

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from finegrain.component_io import config_to_text  # noqa: E402
from finegrain.config import Config, load_config  # noqa: E402
from finegrain.fingerprint import code_version, dataset_fingerprint  # noqa: E402
from pipelines.training import compile_pipeline, config_hash, member_items  # noqa: E402


def image_for_tag(cfg: Config, tag: str, registry: str = "") -> str:
    """The CUDA image built for one commit: `$REGISTRY/finegrain:<tag>-cuda` (registry from the config's
    base_image when REGISTRY is not set)."""
    repo = f"{registry.rstrip('/')}/finegrain" if registry else cfg.pipeline.base_image.rsplit(":", 1)[0]
    return f"{repo}:{tag}-cuda"


def run_parameters(cfg: Config, data_hash: str, version: str) -> dict:
    """The pipeline parameters of one run: the resolved config travels whole, the hashes key the cache."""
    return {
        "config_text": config_to_text(cfg),
        "data_uri": cfg.data.uri,
        "data_hash": data_hash,
        "code_version": version,
        "work_root": f"{cfg.pipeline.work_root.rstrip('/')}/{config_hash(cfg)}-{data_hash[:8]}",
        "run_name": cfg.pipeline.name,
    }


def make_client(cfg: Config):
    import kfp

    host = os.environ.get("KFP_HOST")
    if not host:
        raise SystemExit("KFP_HOST is not set: export KFP_HOST=https://<your kubeflow>/pipeline")
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
    version_name = f"{params['code_version']}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
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
    overrides = list(args.overrides)
    cfg = load_config(args.config, overrides)
    if os.environ.get("IMAGE_TAG"):
        cfg.pipeline.base_image = image_for_tag(cfg, os.environ["IMAGE_TAG"], os.environ.get("REGISTRY", ""))
    params = run_parameters(cfg, dataset_fingerprint(cfg.data.uri), code_version())
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg, Path(tmp) / "training.yaml")
        print(f"compiled {len(member_items(cfg))} members on {cfg.pipeline.base_image}")
        client = make_client(cfg)
        print(submit(client, cfg, args.action, params, package, os.environ.get("KFP_HOST", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
