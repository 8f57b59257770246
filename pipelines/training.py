"""The finegrain training pipeline: plan -> preprocess -> train (backbone x fold fan-out on GPUs) -> regroup ->
calibrate -> ensemble -> submit -> register, inside an exit handler that ends the parent MLflow run with the final status.

`python pipelines/training.py --config configs/hecto.yaml --output pipelines/training.yaml` compiles it.
Compile-time settings (images, GPU and pod settings) come from the config given here. Everything a run
depends on is decided by the run itself: its parameters are the config text (default: this config) plus
`key=value` overrides, editable in the Kubeflow UI; the first task resolves them, fingerprints the dataset and
plans every task at run time: its key (the settings it reads plus its inputs' keys), whether its outputs can
be reused, and the (backbone, fold) fan-out.
"""

import argparse
import copy
import sys
from pathlib import Path

from kfp import compiler, dsl, kubernetes

from components.calibrate.component import calibrate
from components.ensemble.component import ensemble
from components.plan.component import plan_run
from components.preprocess.component import preprocess
from components.register.component import register
from components.regroup.component import regroup
from components.submit.component import submit
from components.tracking.component import end_run, start_run
from components.train.component import train
from finegrain.config import Config, config_to_text, load_config
from finegrain.orchestration.plan import member_items

S3_ENV = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
POD_LABEL = (
    "finegrain.io/role",
    "pipeline",
)  # NetworkPolicies admit only pods with this label to MinIO/MLflow


def with_image(component, image: str):
    """A copy of a component that runs on `image` (all components share the one finegrain image)."""
    comp = copy.deepcopy(component)
    comp.component_spec.implementation.container.image = image
    return comp


def _cluster_settings(task, cfg: Config, *, cpu: str, memory: str) -> None:
    """What every task gets on the cluster: resources, endpoints, S3 credentials from the Secret, a label."""
    p = cfg.pipeline
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_env_variable("FINEGRAIN_S3_ENDPOINT", p.s3_endpoint)
    task.set_env_variable("MLFLOW_S3_ENDPOINT_URL", "http://" + p.s3_endpoint)
    task.set_env_variable("NO_ALBUMENTATIONS_UPDATE", "1")
    # Credentials reach pods only by reference to the Secret: the compiled YAML never holds a value.
    kubernetes.use_secret_as_env(task, secret_name=p.s3_secret, secret_key_to_env=S3_ENV)
    kubernetes.add_pod_label(task, label_key=POD_LABEL[0], label_value=POD_LABEL[1])
    task.set_caching_options(p.cache)


def _gpu_settings(task, cfg: Config) -> None:
    p = cfg.pipeline
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    kubernetes.add_toleration(task, key=p.gpu_toleration_key, operator="Exists", effect="NoSchedule")
    for key, value in p.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    # DataLoader workers pass batches through /dev/shm; the container default (64 MiB) kills them.
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=p.train_shm_size
    )
    # Spot preemption: the retried pod resumes from the last epoch's checkpoint at the work URI.
    task.set_retry(num_retries=p.train_retries, backoff_duration="60s", backoff_factor=2.0)
    kubernetes.set_timeout(task, p.train_timeout_s)


def build_pipeline(cfg: Config):
    """Return the pipeline function for this config (compile it or run it with kfp.local)."""
    p = cfg.pipeline
    comps = {
        c.name: with_image(c, p.base_image if c is train else p.resolved_cpu_image())
        for c in (plan_run, start_run, end_run, preprocess, train, regroup, calibrate, ensemble, submit, register)
    }

    @dsl.pipeline(name=p.name, description=__doc__.splitlines()[0], pipeline_root=p.pipeline_root)
    def training(
        config_text: str = config_to_text(cfg),
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature; never mutated
        data_uri: str = "",
        run_name: str = p.name,
    ):
        # The exit task may take no other task's output: it gets the run's parameters and the KFP run id.
        done = comps["end-run"](
            config_text=config_text, overrides=overrides, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
        ).set_display_name("end mlflow parent run")
        _cluster_settings(done, cfg, cpu=p.step_cpu, memory=p.step_memory)
        done.set_caching_options(False)

        with dsl.ExitHandler(done):
            plan = comps["plan-run"](
                config_text=config_text, overrides=overrides, data_uri=data_uri,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_display_name("plan: config, data fingerprint, task keys")
            _cluster_settings(plan, cfg, cpu=p.step_cpu, memory=p.step_memory)
            plan.set_caching_options(False)  # it must see the data (and the finished outputs) as they are now

            tracking_task = comps["start-run"](
                config_text=plan.outputs["config"], run_name=run_name, data_hash=plan.outputs["data_hash"],
                code_version=plan.outputs["code_version"], run_root=plan.outputs["run_root"],
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_display_name("mlflow parent run")
            _cluster_settings(tracking_task, cfg, cpu=p.step_cpu, memory=p.step_memory)
            tracking_task.set_caching_options(False)  # a new parent run for every pipeline run

            # Each step is given only its spec (its key, settings and inputs' keys): its cache key then
            # changes exactly when what it reads changes, and never with a setting only other steps read.
            pre = comps["preprocess"](spec=plan.outputs["preprocess_spec"]).set_display_name("preprocess")
            _cluster_settings(pre, cfg, cpu=p.step_cpu, memory=p.step_memory)

            # Inside the loop only the item and artifacts: kfp.local replaces task-output parameters there, so
            # each member's spec travels inside its loop item.
            with dsl.ParallelFor(items=plan.outputs["Output"], parallelism=p.parallelism) as item:
                tr = (
                    comps["train"](
                        preprocess=pre.outputs["result"], backbone=item.backbone, fold=item.fold,
                        spec=item.spec,
                    )
                    .set_display_name("train fold")
                    .after(tracking_task)  # steps nest their MLflow runs under the parent it opens
                )
                _cluster_settings(tr, cfg, cpu=p.train_cpu, memory=p.train_memory)
                _gpu_settings(tr, cfg)

            def members():
                # one Collected per consumer: kfp 2.17 fails to compile a Collected shared by several tasks
                return dsl.Collected(tr.outputs["member"])

            rg = comps["regroup"](spec=plan.outputs["regroup_spec"], members=members())
            rg.set_display_name("regroup")
            cal = (
                comps["calibrate"](spec=plan.outputs["calibrate_spec"], members=members())
                .set_display_name("calibrate")
                .after(rg)
            )
            ens = comps["ensemble"](
                spec=plan.outputs["ensemble_spec"], members=members(), calibration=cal.outputs["result"],
                groups=rg.outputs["result"], preprocess=pre.outputs["result"],
            ).set_display_name("ensemble")
            sub = comps["submit"](spec=plan.outputs["submit_spec"], ensemble=ens.outputs["result"])
            sub.set_display_name("submit")
            # After submit: a model is registered only once its submission validated.
            reg = (
                comps["register"](
                    spec=plan.outputs["register_spec"], members=members(), calibration=cal.outputs["result"],
                    ensemble=ens.outputs["result"],
                )
                .set_display_name("register model")
                .after(sub)
            )
            for task in (rg, cal, ens, sub, reg):
                _cluster_settings(task, cfg, cpu=p.step_cpu, memory=p.step_memory)
            # The token for submit.endpoint; optional, so a cluster without the Secret still runs submit.
            kubernetes.use_secret_as_env(
                sub, secret_name=p.submit_token_secret,
                secret_key_to_env={"FINEGRAIN_SUBMIT_TOKEN": cfg.submit.token_env}, optional=True,
            )

    return training


def compile_pipeline(cfg: Config, output: "str | Path") -> Path:
    output = Path(output)
    compiler.Compiler().compile(build_pipeline(cfg), package_path=str(output))
    return output


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the finegrain training pipeline to YAML.")
    parser.add_argument("--config", default="configs/hecto.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key.path=value")
    parser.add_argument("--output", default=str(Path(__file__).with_suffix(".yaml")))
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    path = compile_pipeline(cfg, args.output)
    print(f"compiled (default config: {len(member_items(cfg))} members) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
