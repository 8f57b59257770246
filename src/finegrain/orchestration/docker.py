"""`finegrain run --runner docker`: the local pipeline with every step in the project's image (kfp.local DockerRunner).

`orchestration.local.run_pipeline_locally` builds and calls the pipeline exactly as for the subprocess runner;
this module only supplies what differs: where things live, who owns them, and how each container is started.

Layout -- everything a step writes is under ONE root (`--out`), bind-mounted at the same absolute path, so the
paths in the config, in kfp's executor files and in MLflow mean the same inside and outside the containers:

    <root>/work/                             the work root, as with the subprocess runner (<root>/<step>: links)
    <root>/.kfp/outputs                      kfp's pipeline root (artifacts, executor input/output)
    <root>/.kfp/cache                        kfp.local's cache (read and written by this process only)
    <root>/mlflow/mlruns.db, mlartifacts/    the embedded MLflow store, when tracking.uri is sqlite:///

A local dataset outside the root is mounted read-only at its own path (steps never write to their input);
s3:// data and an http(s) MLflow server are reached over the host network, as on the cluster.

Ownership: containers run as the image's non-root user. When this process is root (a fresh clone on a build
box), the root is chowned to that user first; otherwise the containers run as the calling user's UID/GID so
that the outputs stay theirs (the image works for any UID: HOME and the caches are on the /tmp tmpfs).

Each container runs the way manifests/ run our own workloads: non-root, read-only root filesystem with a
tmpfs on /tmp, all capabilities dropped, no privilege escalation.
"""

from __future__ import annotations

import os
from pathlib import Path

from finegrain import storage
from finegrain.config import Config

# Labels on every step container: which run (root) it belongs to, so tools and tests can find them.
ROOT_LABEL = "io.finegrain.root"
# Forwarded from this process to every step: S3 endpoint and credentials, MLflow and finegrain settings.
ENV_PREFIXES = ("FINEGRAIN_", "MLFLOW_", "AWS_")
CONTAINER_ENV = {
    # The root filesystem is read-only: HOME (torch/matplotlib/MLflow caches) must be on the tmpfs.
    "HOME": "/tmp",
    "MPLCONFIGDIR": "/tmp/matplotlib",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "PYTHONUNBUFFERED": "1",
}


class ContainerRunError(RuntimeError):
    """Docker is unusable or an image is missing; the message says what to run."""


def images_for(cfg: Config) -> list[str]:
    """Every image the compiled pipeline references: base_image (train) and the resolved cpu_image (the rest)."""
    return sorted({cfg.pipeline.base_image, cfg.pipeline.resolved_cpu_image()})


def _client():
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker comes with mlflow
        raise ContainerRunError("the `docker` Python package is missing (pip install docker)") from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker raises DockerException, requests' errors, or FileNotFoundError
        raise ContainerRunError(f"cannot reach the Docker engine ({exc}); is dockerd running?") from exc
    return client


def image_user(client, image: str) -> tuple[int, int | None]:
    """(uid, gid or None) of the image's USER; refuses images that would run as root or are not built."""
    try:
        attrs = client.images.get(image).attrs
    except Exception as exc:
        raise ContainerRunError(f"image {image} not found locally: build it with `make images-cpu`") from exc
    user = (attrs.get("Config") or {}).get("User") or "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0:
        raise ContainerRunError(f"image {image} runs as {user!r}; expected a numeric non-root USER")
    return int(uid), int(gid) if gid.isdigit() else None


def chown_tree(root: Path, uid: int) -> None:
    """Hand `root` and everything under it to `uid` (group kept)."""
    os.chown(root, uid, -1)
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(base, name), uid, -1, follow_symlinks=False)


def forwarded_env(environ: "dict[str, str] | None" = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES)}
    return {**env, **CONTAINER_ENV}


def container_args(root: Path, user: str, data: str | None, env: dict[str, str]) -> dict:
    """Keyword arguments for kfp.local's DockerRunner (docker-py `containers.run`), one place to read them."""
    from docker.types import Mount

    mounts = [Mount(target=str(root), source=str(root), type="bind")]
    if data and not storage.is_s3(data) and not Path(data).resolve().is_relative_to(root):
        mounts.append(Mount(target=str(Path(data).resolve()), source=str(Path(data).resolve()), type="bind",
                            read_only=True))
    return {
        "network_mode": "host",  # S3, MLflow and PyPI-less hosts: the steps see what this machine sees
        "user": user,
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,mode=1777"},
        "shm_size": "1g",  # DataLoader workers pass batches through /dev/shm (64 MiB by default)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mounts": mounts,
        "labels": {ROOT_LABEL: str(root)},
        "environment": env,
    }


def prepare_docker_run(cfg: Config, out_dir: Path, data: str) -> tuple[Config, dict]:
    """Lay out `out_dir` for containers; returns the config to build the pipeline from and `local.init` kwargs."""
    from kfp import local

    root = Path(out_dir).resolve()
    cfg = cfg.model_copy(deep=True)
    if cfg.tracking.uri.startswith("sqlite:///"):
        # The store must be inside the mount; the artifacts go beside it (runs.default_artifact_location).
        (root / "mlflow").mkdir(parents=True, exist_ok=True)
        cfg.tracking.uri = f"sqlite:///{root / 'mlflow' / 'mlruns.db'}"
    pipeline_root = root / ".kfp" / "outputs"
    pipeline_root.mkdir(parents=True, exist_ok=True)

    client = _client()
    try:
        users = {image: image_user(client, image) for image in images_for(cfg)}
    finally:
        client.close()
    if len({uid for uid, _ in users.values()}) > 1:
        raise ContainerRunError(f"the images run as different users: {users}")
    uid, gid = next(iter(users.values()))
    if os.getuid() == 0:
        chown_tree(root, uid)
        user = str(uid) if gid is None else f"{uid}:{gid}"
    else:
        user = f"{os.getuid()}:{os.getgid()}"

    runner = local.DockerRunner(**container_args(root, user, data, forwarded_env()))
    init_kwargs = {
        "runner": runner,
        "pipeline_root": str(pipeline_root),
        "cache_root": str(root / ".kfp" / "cache"),
    }
    print(f"[finegrain] docker runner: images {', '.join(users)} as user {user}; root {root}", flush=True)
    return cfg, init_kwargs
