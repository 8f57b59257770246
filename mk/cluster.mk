# Cluster-side targets: container images, manifests, lint of Dockerfiles and the CI workflow.
# Included by the top-level Makefile (`include mk/cluster.mk`); usable alone with `make -f mk/cluster.mk`.
#
#   make images                                build finegrain:<sha>-cpu/-cuda (+latest-*) and finegrain-mlflow
#   make images REGISTRY=ghcr.io/me            the same, tagged ghcr.io/me/finegrain:...
#   make images-cpu                            only the CPU image (what `make test-containers` runs)
#   make push   REGISTRY=ghcr.io/me            push them
#   make deploy REGISTRY=ghcr.io/me OVERLAY=eks CLUSTER_NAME=prod    secrets + kustomize apply + wait
#   make lint-images lint-workflow             hadolint / actionlint (no Docker or cluster needed)
#
# No registry access needed to build: images/base.sh pulls BASE_IMAGE or, failing that, bootstraps an
# equivalent Debian bookworm + Python 3.11 base with debootstrap, from DEBIAN_MIRROR or else the Debian
# mirror this machine's apt uses. Builds use the host network (DOCKER_NETWORK).
#
# Package indexes come from this machine's configuration, never from this repository: pip inside every build
# uses the index pip uses here (images/host-index.sh: PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST
# from the environment, else `pip config`; nothing configured: pip's own default). Any of them can be given
# here too: make images PIP_INDEX_URL=https://<your-index>/simple. CPU_TORCH_INDEX / CUDA_TORCH_INDEX are
# optional separate indexes for torch alone (a CPU-wheel index for the CPU image, say); empty or unreachable,
# torch comes from the package index, and the build says so.

REGISTRY ?=
TAG ?= $(shell git rev-parse --short HEAD)
GIT_SHA ?= $(shell git rev-parse HEAD)
# Read the commit once per make run: `?=` alone re-runs git at every use, so a commit made while `make images`
# builds would tag the CUDA and CPU images with different commits.
TAG := $(TAG)
GIT_SHA := $(GIT_SHA)
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
BASE_IMAGE ?= python:3.11.14-slim-bookworm
# $(call host_pip,VAR,key): images/host-index.sh's answer, asked once per make run and only when used.
# An empty PIP_* in the environment counts as unset, as pip itself treats it (an empty one given on the make
# command line does win: pip's default index for the builds whatever this machine is configured with).
host_pip = $(eval $1 := $$(shell images/host-index.sh pip $2))$($1)
ifeq ($(PIP_INDEX_URL),)
PIP_INDEX_URL = $(call host_pip,PIP_INDEX_URL,index-url)
endif
ifeq ($(PIP_EXTRA_INDEX_URL),)
PIP_EXTRA_INDEX_URL = $(call host_pip,PIP_EXTRA_INDEX_URL,extra-index-url)
endif
ifeq ($(PIP_TRUSTED_HOST),)
PIP_TRUSTED_HOST = $(call host_pip,PIP_TRUSTED_HOST,trusted-host)
endif
# One line, once per make run and only when a build runs: what of this machine's pip configuration the
# builds do not get, and why (images/host-index.sh pip left-out; paths on this host, find-links, ...).
pip_left_out = $(eval pip_left_out :=)$(call _note,$(shell images/host-index.sh pip left-out))
_note = $(if $1,$(info host-index.sh: $1))
CUDA_TORCH_INDEX ?=
CPU_TORCH_INDEX ?=
DOCKER_NETWORK ?= host
HADOLINT ?= $(VENV_BIN)/hadolint
ACTIONLINT ?= $(VENV_BIN)/actionlint

# Unqualified names without REGISTRY: local builds need no registry at all.
IMAGE = $(if $(REGISTRY),$(REGISTRY)/)finegrain
MLFLOW_IMAGE = $(if $(REGISTRY),$(REGISTRY)/)finegrain-mlflow
# Docker without the buildx plugin (Debian's docker.io) cannot use BuildKit; the classic builder caches too.
DOCKER_BUILDKIT ?= $(shell $(DOCKER) buildx version >/dev/null 2>&1 && echo 1 || echo 0)
# base.sh runs first on its own so that a failure to get a base stops the recipe with its message.
DOCKER_BUILD = $(pip_left_out)base="$$(images/base.sh $(BASE_IMAGE))" && DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) \
  $(DOCKER) build --network $(DOCKER_NETWORK) --build-arg BASE_IMAGE="$$base" --build-arg GIT_SHA=$(GIT_SHA) \
  --build-arg PIP_INDEX_URL="$(PIP_INDEX_URL)" --build-arg PIP_EXTRA_INDEX_URL="$(PIP_EXTRA_INDEX_URL)" \
  --build-arg PIP_TRUSTED_HOST="$(PIP_TRUSTED_HOST)"

.PHONY: docker-engine images images-cpu images-cuda images-mlflow image-sizes push deploy lint-images lint-workflow _require-registry

_require-registry:
	@test -n "$(REGISTRY)" || { echo "set REGISTRY, e.g. make $(MAKECMDGOALS) REGISTRY=ghcr.io/you" >&2; exit 2; }

images: images-cuda images-cpu images-mlflow image-sizes ## build the CUDA, CPU and MLflow images

# A Docker engine that answers: as root on Debian/Ubuntu without one, images/engine.sh installs docker.io and
# debootstrap and starts `dockerd --iptables=false --bridge=none` (what this project's build machines need).
docker-engine: ## start a Docker engine if none answers (installs one as root)
	@DOCKER=$(DOCKER) images/engine.sh

images-cuda: docker-engine ## build only the CUDA image (finegrain:<tag>-cuda)
	$(DOCKER_BUILD) -f images/Dockerfile \
	  --build-arg VARIANT=cuda --build-arg TORCH_INDEX_URL="$(CUDA_TORCH_INDEX)" \
	  --build-arg NVIDIA_DRIVER_CAPABILITIES=compute,utility \
	  -t $(IMAGE):$(TAG)-cuda -t $(IMAGE):latest-cuda .

images-cpu: docker-engine ## build only the CPU image (what `make test-containers` runs)
	$(DOCKER_BUILD) -f images/Dockerfile \
	  --build-arg VARIANT=cpu --build-arg TORCH_INDEX_URL="$(CPU_TORCH_INDEX)" \
	  --build-arg NVIDIA_DRIVER_CAPABILITIES= \
	  -t $(IMAGE):$(TAG)-cpu -t $(IMAGE):latest-cpu .

images-mlflow: docker-engine ## build only the MLflow server image
	$(DOCKER_BUILD) -f images/mlflow.Dockerfile \
	  --build-arg MLFLOW_VERSION=$(MLFLOW_VERSION) \
	  -t $(MLFLOW_IMAGE):$(MLFLOW_VERSION) .

# What each image weighs (uncompressed, as `docker image ls` counts it) and where its torch came from.
image-sizes: ## print each built image's size and where its torch came from
	@for ref in $(IMAGE):$(TAG)-cuda $(IMAGE):$(TAG)-cpu $(MLFLOW_IMAGE):$(MLFLOW_VERSION); do \
	  if $(DOCKER) image inspect $$ref >/dev/null 2>&1; then \
	    printf '%-50s %6s MB  %s\n' $$ref \
	      $$(( $$($(DOCKER) image inspect -f '{{.Size}}' $$ref) / 1000000 )) \
	      "$$($(DOCKER) run --rm --entrypoint cat $$ref /opt/venv/torch-index 2>/dev/null | sed 's/^/torch: /')"; \
	  fi; \
	done

push: _require-registry ## push the images to REGISTRY
	$(DOCKER) push $(IMAGE):$(TAG)-cuda
	$(DOCKER) push $(IMAGE):latest-cuda
	$(DOCKER) push $(IMAGE):$(TAG)-cpu
	$(DOCKER) push $(IMAGE):latest-cpu
	$(DOCKER) push $(MLFLOW_IMAGE):$(MLFLOW_VERSION)

# Secrets first (created once, never overwritten by a re-deploy), then everything else, then wait for the
# services the pipeline needs. overlays/local brings its own placeholder Secrets.
deploy: _require-registry ## secrets, kustomize apply, wait (REGISTRY, OVERLAY, CLUSTER_NAME)
	@if [ "$(OVERLAY)" != local ]; then NAMESPACE=$(NAMESPACE) KUBECTL=$(KUBECTL) bash scripts/create_secrets.sh; fi
	$(KUBECTL) apply -k $$($(CLUSTER_PY) scripts/deploy_kustomization.py --overlay $(OVERLAY) \
	  --registry $(REGISTRY) --tag $(TAG) $(if $(CLUSTER_NAME),--cluster-name $(CLUSTER_NAME)))
	$(KUBECTL) -n $(NAMESPACE) rollout status statefulset/minio --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) rollout status statefulset/mlflow-postgres --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) rollout status deployment/mlflow --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) wait --for=condition=complete job/minio-buckets --timeout=300s

lint-images: ## hadolint the Dockerfiles
	$(HADOLINT) images/Dockerfile images/mlflow.Dockerfile

lint-workflow: ## actionlint the CI workflow
	$(ACTIONLINT) .github/workflows/retrain.yml
