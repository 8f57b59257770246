"""The batch-prediction pipeline: list the images -> predict shards (ParallelFor over CPU pods; GPU pods when
predict.gpu) -> concatenate them in input order into one predictions.csv (+ the errors file beside it).

    python pipelines/predict.py --config configs/hecto.yaml --images s3://finegrain-data/new \
        --out s3://finegrain-artifacts/predictions/new.csv run       # submit to KFP_HOST (make predict-pipeline)
    python pipelines/predict.py --images data/sample/test --out runs/predict/predictions.csv local   # kfp.local
    python pipelines/predict.py compile                               # writes pipelines/predict.yaml

`--model` defaults to `models:/<tracking.register_model>@champion`, resolved by each run against tracking.uri;
IMAGE_TAG (and REGISTRY) pick the commit's images, as for pipelines/submit.py.
A run's parameters (the config text, model URI, images and output URI) are editable in the Kubeflow UI. No
task is cached: the same parameters must give the champion of the day, not last week's predictions. An image
that cannot be read or decoded is listed with its reason in `<out stem>.errors.csv` and never stops the batch.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from components.predict.component import collect_predictions, plan_predict, predict_shard
from finegrain.config import Config, config_to_text, load_config
from pipelines.submit import image_for_tag
from pipelines.training import _cluster_settings, with_image


def _on_gpu(task, cfg: Config) -> None:
    p = cfg.pipeline
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    kubernetes.add_toleration(task, key=p.gpu_toleration_key, operator="Exists", effect="NoSchedule")
    for key, value in p.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)


def build_predict_pipeline(cfg: Config, model_uri: str = "", images_uri: str = "", out_uri: str = ""):
    """The pipeline function for this config; the URIs given are its parameters' defaults."""
    p, pr = cfg.pipeline, cfg.predict
    cpu_image = p.resolved_cpu_image()
    plan_c, collect_c = with_image(plan_predict, cpu_image), with_image(collect_predictions, cpu_image)
    shard_c = with_image(predict_shard, p.base_image if pr.gpu else cpu_image)

    @dsl.pipeline(name=f"{p.name}-predict", description=__doc__.splitlines()[0], pipeline_root=p.pipeline_root)
    def batch_predict(
        config_text: str = config_to_text(cfg),
        model_uri: str = model_uri or f"models:/{cfg.tracking.register_model}@champion",
        images_uri: str = images_uri,
        out_uri: str = out_uri,
    ):
        plan = plan_c(config_text=config_text, model_uri=model_uri, images_uri=images_uri, out_uri=out_uri)
        plan.set_display_name("list images, plan shards")
        _cluster_settings(plan, cfg, cpu=p.step_cpu, memory=p.step_memory)
        with dsl.ParallelFor(items=plan.outputs["Output"], parallelism=pr.parallelism) as item:
            shard = shard_c(listing=plan.outputs["listing"], shard=item.shard, start=item.start, stop=item.stop)
            shard.set_display_name("predict shard")
            _cluster_settings(shard, cfg, cpu=pr.cpu, memory=pr.memory)
            if pr.gpu:
                _on_gpu(shard, cfg)
        collect = collect_c(listing=plan.outputs["listing"], parts=dsl.Collected(shard.outputs["part"]))
        collect.set_display_name("collect predictions")
        _cluster_settings(collect, cfg, cpu=p.step_cpu, memory=p.step_memory)
        for task in (plan, shard, collect):
            task.set_caching_options(False)

    return batch_predict


def compile_predict_pipeline(cfg: Config, output: "str | Path", **defaults: str) -> Path:
    output = Path(output)
    compiler.Compiler().compile(build_predict_pipeline(cfg, **defaults), package_path=str(output))
    return output


def run_locally(cfg: Config, model_uri: str, images_uri: str, out_uri: str, kfp_root: str) -> None:
    """The same pipeline on this machine with kfp.local (every task a subprocess of this Python)."""
    from kfp import local

    root = Path(kfp_root).resolve()
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "outputs"), raise_on_error=True
    )
    build_predict_pipeline(cfg)(
        config_text=config_to_text(cfg), model_uri=model_uri, images_uri=images_uri, out_uri=out_uri
    )


def submit_run(cfg: Config, host: str, model_uri: str, images_uri: str, out_uri: str) -> str:
    """Compile and start one run on the cluster; returns the run's URL."""
    from pipelines.submit import make_client

    params = {"config_text": config_to_text(cfg), "model_uri": model_uri, "images_uri": images_uri, "out_uri": out_uri}
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_predict_pipeline(cfg, Path(tmp) / "predict.yaml")
        run = make_client(cfg, host).create_run_from_pipeline_package(
            str(package), arguments=params, run_name=f"{cfg.pipeline.name}-predict",
            experiment_name=cfg.pipeline.experiment, namespace=os.environ.get("KFP_NAMESPACE", cfg.pipeline.namespace),
            service_account=cfg.pipeline.service_account,
        )  # fmt: skip
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["compile", "run", "local"])
    parser.add_argument("--config", default="configs/hecto.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key.path=value")
    parser.add_argument("--model", default="", help="model URI (default: models:/<register_model>@champion)")
    parser.add_argument("--images", default="", help="directory or s3:// prefix of the images")
    parser.add_argument("--out", default="", help="predictions CSV to write (local path or s3://)")
    parser.add_argument("--output", default=str(Path(__file__).with_suffix(".yaml")), help="compile: YAML path")
    parser.add_argument("--kfp-root", default="runs/predict/.kfp", help="local: kfp.local's outputs")
    args = parser.parse_args(argv)
    if args.action != "compile" and not (args.images and args.out):
        parser.error(f"{args.action} needs --images and --out")
    if args.action == "run":
        from pipelines.submit import kfp_host

        host = kfp_host()  # before anything else: without a cluster there is nothing to do
    cfg = load_config(args.config, args.overrides)
    if os.environ.get("IMAGE_TAG"):  # the images built for one commit, as `make submit-pipeline` uses them
        tag, registry = os.environ["IMAGE_TAG"], os.environ.get("REGISTRY", "")
        cfg.pipeline.base_image = image_for_tag(cfg, tag, registry, "cuda")
        cfg.pipeline.cpu_image = image_for_tag(cfg, tag, registry, "cpu")
    model = args.model or f"models:/{cfg.tracking.register_model}@champion"
    if args.action == "compile":
        path = compile_predict_pipeline(cfg, args.output, model_uri=model, images_uri=args.images, out_uri=args.out)
        print(f"compiled -> {path}")
    elif args.action == "local":
        # Tasks run as subprocesses: local paths must not depend on their working directory.
        images, out = (u if "://" in u else str(Path(u).resolve()) for u in (args.images, args.out))
        if cfg.tracking.uri.startswith("sqlite:///") and not cfg.tracking.uri.startswith("sqlite:////"):
            cfg.tracking.uri = "sqlite:///" + str(Path(cfg.tracking.uri[len("sqlite:///") :]).resolve())
        run_locally(cfg, model, images, out, args.kfp_root)
        print(f"predictions -> {args.out}")
    else:
        print(submit_run(cfg, host, model, args.images, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
