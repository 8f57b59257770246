# Cluster-side targets: container images, manifests, lint of Dockerfiles and the CI workflow.
# Included by the top-level Makefile (`include mk/cluster.mk`); usable alone with `make -f mk/cluster.mk`.
#
#   make images REGISTRY=ghcr.io/me            build finegrain:<sha>-cuda/-cpu (+latest-*) and finegrain-mlflow
#   make push   REGISTRY=ghcr.io/me            push them
#   make deploy REGISTRY=ghcr.io/me OVERLAY=eks CLUSTER_NAME=prod    secrets + kustomize apply + wait
#   make lint-images lint-workflow             hadolint / actionlint (no Docker or cluster needed)

REGISTRY ?=
TAG ?= $(shell git rev-parse --short HEAD)
GIT_SHA ?= $(shell git rev-parse HEAD)
PYTHON ?= .venv/bin/python
# The top-level Makefile's PYTHON is the interpreter that *creates* the venv (python3); these targets need
# the venv's tools, so they go through VENV_BIN rather than trusting PYTHON to point into .venv.
VENV_BIN ?= .venv/bin
CLUSTER_PY ?= $(VENV_BIN)/python
DOCKER ?= docker
KUBECTL ?= kubectl
OVERLAY ?= eks
CLUSTER_NAME ?=
NAMESPACE ?= finegrain
MLFLOW_VERSION ?= 3.17.2
CUDA_TORCH_INDEX ?= https://pypi.org/simple
CPU_TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
HADOLINT ?= $(VENV_BIN)/hadolint
ACTIONLINT ?= $(VENV_BIN)/actionlint

IMAGE = $(REGISTRY)/finegrain
MLFLOW_IMAGE = $(REGISTRY)/finegrain-mlflow

.PHONY: images push deploy lint-images lint-workflow _require-registry

_require-registry:
	@test -n "$(REGISTRY)" || { echo "set REGISTRY, e.g. make $(MAKECMDGOALS) REGISTRY=ghcr.io/you" >&2; exit 2; }

images: _require-registry
	$(DOCKER) build -f images/Dockerfile \
	  --build-arg VARIANT=cuda --build-arg TORCH_INDEX_URL=$(CUDA_TORCH_INDEX) \
	  --build-arg NVIDIA_DRIVER_CAPABILITIES=compute,utility --build-arg GIT_SHA=$(GIT_SHA) \
	  -t $(IMAGE):$(TAG)-cuda -t $(IMAGE):latest-cuda .
	$(DOCKER) build -f images/Dockerfile \
	  --build-arg VARIANT=cpu --build-arg TORCH_INDEX_URL=$(CPU_TORCH_INDEX) \
	  --build-arg NVIDIA_DRIVER_CAPABILITIES= --build-arg GIT_SHA=$(GIT_SHA) \
	  -t $(IMAGE):$(TAG)-cpu -t $(IMAGE):latest-cpu .
	$(DOCKER) build -f images/mlflow.Dockerfile \
	  --build-arg MLFLOW_VERSION=$(MLFLOW_VERSION) --build-arg GIT_SHA=$(GIT_SHA) \
	  -t $(MLFLOW_IMAGE):$(MLFLOW_VERSION) .

push: _require-registry
	$(DOCKER) push $(IMAGE):$(TAG)-cuda
	$(DOCKER) push $(IMAGE):latest-cuda
	$(DOCKER) push $(IMAGE):$(TAG)-cpu
	$(DOCKER) push $(IMAGE):latest-cpu
	$(DOCKER) push $(MLFLOW_IMAGE):$(MLFLOW_VERSION)

# Secrets first (created once, never overwritten by a re-deploy), then everything else, then wait for the
# services the pipeline needs. overlays/local brings its own placeholder Secrets.
deploy: _require-registry
	@if [ "$(OVERLAY)" != local ]; then NAMESPACE=$(NAMESPACE) KUBECTL=$(KUBECTL) bash scripts/create_secrets.sh; fi
	$(KUBECTL) apply -k $$($(CLUSTER_PY) scripts/deploy_kustomization.py --overlay $(OVERLAY) \
	  --registry $(REGISTRY) $(if $(CLUSTER_NAME),--cluster-name $(CLUSTER_NAME)))
	$(KUBECTL) -n $(NAMESPACE) rollout status statefulset/minio --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) rollout status statefulset/mlflow-postgres --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) rollout status deployment/mlflow --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) wait --for=condition=complete job/minio-buckets --timeout=300s

lint-images:
	$(HADOLINT) images/Dockerfile images/mlflow.Dockerfile

lint-workflow:
	$(ACTIONLINT) .github/workflows/retrain.yml
