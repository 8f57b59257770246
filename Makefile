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

.PHONY: help install run run-containers sample test test-containers test-fast lint compile submit-pipeline schedule bench bench-preprocess bench-regroup bench-train bench-decode clean

help:
	@echo "make run               install if needed, then run the whole pipeline locally on the sample data"
	@echo "make test              install if needed, then run the test suite (starts its own S3 + MLflow servers)"
	@echo "make run-containers    the same run with every step in the CPU image (kfp.local DockerRunner)"
	@echo "make test-containers   build the CPU + MLflow images (cached), run the pipeline in containers, check it"
	@echo "make compile           compile pipelines/training.py to pipelines/training.yaml (CONFIG=...)"
	@echo "make submit-pipeline   compile and submit to a Kubeflow cluster (KFP_HOST, KFP_TOKEN, CONFIG)"
	@echo "make schedule          create a recurring run on the cluster"
	@echo "make bench             run the benchmarks in bench/"
	@echo "make images / push     build / push the container images (see README: Running in containers)"

# The stamp depends on pyproject.toml so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(SAMPLE)/answer_key.json: | $(VENV)/.installed
	$(FG) make-sample --out $(SAMPLE)

sample: $(SAMPLE)/answer_key.json

run: install sample
	$(FG) run --config $(CONFIG) --out $(OUT)

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

# Containers (needs a Docker engine; the images come from mk/cluster.mk). Every step runs in CONTAINER_IMAGE.
CONTAINER_IMAGE ?= $(IMAGE):latest-cpu
CONTAINERS_OUT ?= runs/containers
CONTAINER_SETS = --set pipeline.base_image=$(CONTAINER_IMAGE) --set pipeline.cpu_image=$(CONTAINER_IMAGE)

run-containers: install sample images-cpu
	$(FG) run --runner docker --config $(CONFIG) --out $(CONTAINERS_OUT) $(CONTAINER_SETS)

# Not part of `make test`: tests/test_containers.py and the image checks skip unless FINEGRAIN_DOCKER_TESTS=1.
test-containers: install images-cpu images-mlflow
	FINEGRAIN_DOCKER_TESTS=1 FINEGRAIN_TEST_IMAGE=$(CONTAINER_IMAGE) \
	  FINEGRAIN_TEST_MLFLOW_IMAGE=$(MLFLOW_IMAGE):$(MLFLOW_VERSION) \
	  $(PY) -m pytest -q -p no:cacheprovider tests/test_containers.py tests/test_images.py

test-fast: install
	$(PY) -m pytest -q -x -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check src tests components pipelines bench

compile: install
	$(PY) pipelines/training.py --config $(CONFIG) --output pipelines/training.yaml

submit-pipeline: install
	$(PY) pipelines/submit.py --config $(CONFIG) run

schedule: install
	$(PY) pipelines/submit.py --config $(CONFIG) schedule

bench: bench-preprocess bench-regroup bench-train bench-decode

bench-preprocess: install
	$(PY) bench/preprocess.py --n 4000 --side 600
	$(PY) bench/preprocess.py --n 4000

bench-regroup: install
	$(PY) bench/regroup.py

bench-train: install
	$(PY) bench/train_throughput.py

bench-decode: install
	$(PY) bench/decode.py
	$(PY) bench/decode.py --n 100 --side 1920

clean:
	rm -rf runs local_outputs mlruns mlruns.db pipelines/training.yaml

-include mk/cluster.mk
