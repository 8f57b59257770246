# finegrain — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FG := $(VENV)/bin/finegrain
CONFIG ?= configs/sample.yaml
OUT ?= runs/sample
SAMPLE := data/sample
export NO_ALBUMENTATIONS_UPDATE := 1
export MPLBACKEND := Agg

.PHONY: help install run run-containers sample test test-containers test-fast lint compile submit-pipeline schedule screenshots serve predict-pipeline predict-pipeline-local bench bench-preprocess bench-regroup bench-train bench-decode bench-quality bench-dedup clean

# Every target a person runs carries a `## one line` after its prerequisites; `make help` lists exactly those,
# so a new target shows up by writing its line (tests/test_makefile.py fails on a target without one).
help: ## list every target with one line on what it does (this list)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9][a-zA-Z0-9_-]*:[^=]*## / {printf "make %-18s %s\n", $$1, $$2}' \
	  $(MAKEFILE_LIST)

# The stamp depends on pyproject.toml so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed ## create .venv and install finegrain with its test extras

$(SAMPLE)/answer_key.json: | $(VENV)/.installed
	$(FG) make-sample --out $(SAMPLE)

sample: $(SAMPLE)/answer_key.json ## generate the synthetic sample dataset into data/sample

run: install sample ## install if needed, then run the whole pipeline locally on the sample
	$(FG) run --config $(CONFIG) --out $(OUT)

test: install ## install if needed, then run the test suite (starts its own S3 + MLflow servers)
	$(PY) -m pytest -q -p no:cacheprovider tests

# Containers (needs a Docker engine; the images come from mk/cluster.mk). Every step runs in CONTAINER_IMAGE.
CONTAINER_IMAGE ?= $(IMAGE):latest-cpu
CONTAINERS_OUT ?= runs/containers
CONTAINER_SETS = --set pipeline.base_image=$(CONTAINER_IMAGE) --set pipeline.cpu_image=$(CONTAINER_IMAGE)

run-containers: install sample images-cpu ## `make run` with every step in the CPU image (Docker)
	$(FG) run --runner docker --config $(CONFIG) --out $(CONTAINERS_OUT) $(CONTAINER_SETS)

# Not part of `make test`: tests/orchestration/test_containers.py and the image checks skip unless FINEGRAIN_DOCKER_TESTS=1.
test-containers: install images-cpu images-mlflow ## build the CPU + MLflow images, run the pipeline in them
	FINEGRAIN_DOCKER_TESTS=1 FINEGRAIN_TEST_IMAGE=$(CONTAINER_IMAGE) \
	  FINEGRAIN_TEST_MLFLOW_IMAGE=$(MLFLOW_IMAGE):$(MLFLOW_VERSION) \
	  $(PY) -m pytest -q -p no:cacheprovider tests/orchestration/test_containers.py tests/cluster/test_image_builds.py

test-fast: install ## the test suite without the tests marked slow
	$(PY) -m pytest -q -x -m "not slow" tests

# Not part of `make test`'s requirements: needs Debian's chromium (tests/reports/test_pages_in_browser.py skips
# without it). Installs nothing: without chromium it says how to install it, in one line.
CHROMIUM ?= chromium
screenshots: install ## every page the pipeline writes, in headless Chromium -> docs/screenshots/*.png (~2 min after make run)
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { echo "make screenshots needs Chromium ($(CHROMIUM) not found): \
	apt-get update && apt-get install -y chromium fonts-nanum (fonts-nanum draws the Korean class names)" >&2; exit 2; }
	$(PY) -m scripts.screenshots --run $(OUT) --out docs/screenshots

lint: install ## ruff on src, tests, components, pipelines and bench
	$(VENV)/bin/ruff check src tests components pipelines bench

compile: install ## compile pipelines/training.py to pipelines/training.yaml (CONFIG)
	$(PY) pipelines/training.py --config $(CONFIG) --output pipelines/training.yaml

# Checked while the Makefile is read, before any prerequisite (install, compile) runs: without a cluster to talk
# to there is nothing to do, so say so in one line (pipelines/submit.py says the same when run directly).
MISSING_KFP_HOST = KFP_HOST is not set: export KFP_HOST=https://<your kubeflow>/pipeline \
  (the KFP API endpoint; see README, Deploy to a cluster)
ifneq ($(filter submit-pipeline schedule predict-pipeline,$(MAKECMDGOALS)),)
ifeq ($(KFP_HOST),)
$(error $(MISSING_KFP_HOST))
endif
endif

submit-pipeline: install ## compile and submit a run to a Kubeflow cluster (KFP_HOST, KFP_TOKEN, CONFIG)
	$(PY) pipelines/submit.py --config $(CONFIG) run

schedule: install ## create a recurring run on the cluster (KFP_HOST, KFP_TOKEN, CONFIG)
	$(PY) pipelines/submit.py --config $(CONFIG) schedule

# The registered model outside the pipeline. MODEL: a model URI (empty: the champion of tracking.register_model).
MODEL ?=
SERVE_PORT ?= 8080
TRACKING_URI = $(shell $(PY) -c "from finegrain.config import load_config; print(load_config('$(CONFIG)').tracking.uri)")
CHAMPION = $(shell $(PY) -c "from finegrain.config import load_config; print('models:/' + load_config('$(CONFIG)').tracking.register_model + '@champion')")

# `--env-manager local` starts uvicorn from PATH: the venv goes first. The registry is CONFIG's tracking.uri.
serve: install ## serve MODEL (default: the champion) over HTTP on 127.0.0.1:SERVE_PORT with mlflow models serve
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI="$(TRACKING_URI)" $(VENV)/bin/mlflow models serve \
	  -m $(or $(MODEL),$(CHAMPION)) --env-manager local --host 127.0.0.1 --port $(SERVE_PORT)

# Batch prediction (pipelines/predict.py): every image under IMAGES scored by MODEL into PREDICTIONS, in input
# order; unreadable images listed beside it. On the cluster IMAGES/PREDICTIONS are s3:// URIs.
IMAGES ?=
PREDICTIONS ?= runs/predict/predictions.csv
PREDICT_ARGS = --config $(CONFIG) --images $(IMAGES) --out $(PREDICTIONS) $(if $(MODEL),--model $(MODEL))
NEED_IMAGES = @test -n "$(IMAGES)" || { echo "IMAGES is not set: make $@ IMAGES=<directory or s3://prefix>" >&2; exit 2; }

predict-pipeline: install ## batch-predict IMAGES with MODEL (default: the champion) on the cluster (KFP_HOST)
	$(NEED_IMAGES)
	$(PY) pipelines/predict.py $(PREDICT_ARGS) run

predict-pipeline-local: install ## the batch-prediction pipeline on this machine with kfp.local (IMAGES)
	$(NEED_IMAGES)
	$(PY) pipelines/predict.py $(PREDICT_ARGS) local

bench: bench-preprocess bench-dedup bench-regroup bench-train bench-decode bench-quality ## run every benchmark in bench/

# imagededup lives outside .venv, on PYTHONPATH for the bench only (bench/preprocess.py says how to install it)
IMAGEDEDUP_DIR ?= /tmp/bench-imagededup
bench-preprocess: install ## near-duplicate search, finegrain vs imagededup (needs imagededup)
	PYTHONPATH="$${PYTHONPATH:+$$PYTHONPATH:}$(IMAGEDEDUP_DIR)" $(PY) bench/preprocess.py --n 4000 --side 600
	PYTHONPATH="$${PYTHONPATH:+$$PYTHONPATH:}$(IMAGEDEDUP_DIR)" $(PY) bench/preprocess.py --n 4000

# Real photos from two Debian packages (bench/dedup_photos.py); the check names them and the apt-get line.
DEDUP_PHOTOS := /usr/share/doc/opencv-doc/examples/data /usr/share/backgrounds/mate/nature
bench-dedup: install ## near duplicates per kind of copy on real 600x450 photos vs imagededup (~1 min)
	@for d in $(DEDUP_PHOTOS); do test -d $$d || { echo "make bench-dedup needs real photos from Debian \
	packages ($$d not found): apt-get update && apt-get install -y opencv-doc mate-backgrounds" >&2; exit 2; }; done
	PYTHONPATH="$${PYTHONPATH:+$$PYTHONPATH:}$(IMAGEDEDUP_DIR)" $(PY) -m bench.preprocess --photos --repeat 3

bench-regroup: install ## regroup, finegrain's Regrouper vs scikit-learn's TSNE
	$(PY) bench/regroup.py

bench-train: install ## the train step's data path + step vs bare timm (img/s)
	$(PY) bench/train_throughput.py

bench-decode: install ## the training cache's decode, PIL vs OpenCV
	$(PY) bench/decode.py
	$(PY) bench/decode.py --n 100 --side 1920

# Real photos from a Debian package (Fashion-MNIST); installs nothing: without them it says the one line to run.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
bench-quality: install ## test LogLoss of configs/small.yaml vs baselines on real photos, 3 splits (~15 min)
	@test -d $(FASHION_MNIST) || { echo "make bench-quality needs Debian's Fashion-MNIST photos ($(FASHION_MNIST) \
	not found): apt-get update && apt-get install -y dataset-fashion-mnist" >&2; exit 2; }
	$(PY) -m bench.quality --config configs/small.yaml --json runs/bench/quality.json

clean: ## delete local run outputs: runs/, the MLflow store, the compiled YAML
	rm -rf runs local_outputs mlruns mlruns.db mlartifacts pipelines/training.yaml

-include mk/cluster.mk
