# byoc: train and serve PyTorch image classifiers in SageMaker containers.
# `make demo` runs the main job; `make test` runs the tests. `make help` lists all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TRAINING_IMAGE    ?= byoc-training:latest
SERVING_IMAGE     ?= byoc-serving:latest
CUDA_IMAGE        ?= nvidia/cuda:12.8.1-base-ubuntu24.04
LOCAL_BASE_IMAGE  ?= byoc-base:bookworm
BASE_IMAGE        ?=
# A CA bundle for builds behind a TLS-intercepting proxy; a BuildKit secret, never a layer.
CA_BUNDLE         ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
FASHION_MNIST_IDX ?= /usr/share/datasets/fashion-mnist
DATA_DIR          ?= data/fashion-mnist
SERVE_PORT        ?= 8080
UV_VERSION        := 0.13.9
# ECR: the repositories named in ecr/repositories.json; AWS settings come from the usual AWS_* variables.
TRAINING_REPOSITORY ?= byoc-training
SERVING_REPOSITORY  ?= byoc-serving
LAMBDA_ZIP          ?= build/endpoint-lambda.zip
STANDINS_DIR        ?= .tools/standins
MOTO_PORT           ?= 4566
REGISTRY_PORT       ?= 5000
UV                ?= $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)

# docker compose reads a relative path without ./ as a volume name: hand it an absolute one.
override DATA_DIR := $(abspath $(DATA_DIR))
export TRAINING_IMAGE SERVING_IMAGE CUDA_IMAGE LOCAL_BASE_IMAGE BASE_IMAGE DATA_DIR SERVE_PORT

comma := ,

.PHONY: help demo engine venv sdk-venvs base-image build data fashion-mnist-idx train train-multi serve predict stop test \
        bench-train bench-serve bench-peers bench-cpu-graph peer-images bench-soak bench-serverless-memory bench-multi-host bench-stop clean ecr-repos push scan standins standins-down lambda-zip

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

demo: build data train serve predict  ## the main job: build, train on the default data, serve, predict

engine:  ## make sure a Docker engine with buildx and compose runs (installs them on Debian)
	@scripts/bootstrap-engine.sh

.tools/bin/uv:
	python3 -m venv .tools && .tools/bin/pip install -q "uv==$(UV_VERSION)"

venv: .venv/.synced  ## the development environment (.venv) from uv.lock
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

# SageMaker SDK v2 and v3 are both PyPI's `sagemaker`: each gets its own project, lock and venv,
# which the local-mode tests (tests/sdk_local) run as subprocesses. Kept out of .venv and uv.lock.
sdk-venvs: .venv-sdk-v2/.synced .venv-sdk-v3/.synced  ## the SageMaker SDK v2 and v3 environments for the local-mode tests
.venv-sdk-%/.synced: tests/sdk_local/sdk-%/pyproject.toml tests/sdk_local/sdk-%/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.venv-sdk-$* $(UV) sync --frozen --project tests/sdk_local/sdk-$*
	@touch $@

base-image: engine  ## the offline CUDA-ready base (debootstrap + docker import)
	containers/base/build.sh $(LOCAL_BASE_IMAGE)

build: engine  ## both images (containers/Dockerfile), on BASE_IMAGE, else the CUDA image, else the offline base
	@base=$$(scripts/base-image.sh) && echo "building on $$base" && \
	scripts/build-images.sh "$$base" $(TRAINING_IMAGE) $(SERVING_IMAGE) $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE))

ecr-repos: .venv/.synced  ## create or update the ECR repositories (ecr/repositories.json)
	$(UV) run --frozen python -m ecr ensure

push: ecr-repos  ## log in to ECR, tag both images with the version and git SHA, push them
	$(UV) run --frozen python -m ecr push $(TRAINING_IMAGE)=$(TRAINING_REPOSITORY) $(SERVING_IMAGE)=$(SERVING_REPOSITORY)

scan: .venv/.synced  ## wait for ECR's scans of what push pushed; fail on fixable CRITICAL/HIGH findings
	$(UV) run --frozen python -m ecr scan

standins: .venv/.synced  ## moto server (AWS APIs) and docker-registry on loopback; prints the env to use
	@$(UV) run --frozen python -m ecr.standins up --dir $(STANDINS_DIR) --moto-port $(MOTO_PORT) --registry-port $(REGISTRY_PORT)

standins-down:  ## stop the stand-ins (their registry storage stays in STANDINS_DIR)
	$(UV) run --frozen python -m ecr.standins down --dir $(STANDINS_DIR)

lambda-zip:  ## the Lambda function that calls the endpoint, as LAMBDA_ZIP (with its modules and byoc/contract.py)
	@mkdir -p $(dir $(LAMBDA_ZIP))
	@python3 code/byoc_cloud/lambda_package.py $(LAMBDA_ZIP)

fashion-mnist-idx:  # Debian's dataset-fashion-mnist package, when the IDX files are not there
	@if [ ! -f $(FASHION_MNIST_IDX)/train-images-idx3-ubyte.gz ]; then \
	  if [ -f /etc/debian_version ] && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	  else echo "no Fashion-MNIST IDX files in $(FASHION_MNIST_IDX): install dataset-fashion-mnist or set FASHION_MNIST_IDX" >&2; exit 1; fi; \
	fi

data: $(DATA_DIR)  ## Fashion-MNIST as train/valid/test class folders in DATA_DIR
$(DATA_DIR): | fashion-mnist-idx .venv/.synced
	$(UV) run --frozen byoc-data --idx-dir $(FASHION_MNIST_IDX) --out $@

train: data  ## docker compose up train: a training job over ./opt_ml
	docker compose up --exit-code-from train train

train-multi: data  ## one job on two local hosts: docker compose --profile multi up algo-1 algo-2
	docker compose --profile multi up algo-1 algo-2
	@codes=$$(docker compose --profile multi ps -a --format '{{.Service}}={{.ExitCode}}' algo-1 algo-2); \
	echo "exit codes:" $$codes; ! echo "$$codes" | grep -qv '=0$$'

serve:  ## docker compose up serve: the endpoint on localhost:SERVE_PORT
	docker compose up -d --wait serve

predict:  ## send one test image to the running endpoint
	@image=$$(ls -d $(DATA_DIR)/test/*/ | head -n 3 | tail -n 1); file=$$(ls $$image | head -n 1); \
	echo "POST $$image$$file (true class: $$(basename $$image))"; \
	curl -sS --fail-with-body -H 'Content-Type: image/png' --data-binary @"$$image$$file" \
	  http://127.0.0.1:$(SERVE_PORT)/invocations; echo

stop:  ## stop the compose services
	docker compose down

test: build .venv/.synced sdk-venvs fashion-mnist-idx  ## unit tests, container tests, SageMaker SDK local mode (builds the images first)
	@# SDK v3's ModelBuilder serves on host port 8080 whatever it is told: make demo's endpoint must go first
	@if [ -n "$$(docker compose ps -q 2>/dev/null)" ]; then \
	  echo "make test: stopping make demo's endpoint on 127.0.0.1:$(SERVE_PORT) (make serve starts it again)"; \
	  docker compose down; fi
	$(UV) run --frozen pytest

bench-train: build .venv/.synced data  ## training benchmarks through the image (BENCHMARKS.md); results in bench-results/
	scripts/bench-train.sh

bench-serve: build .venv/.synced data  ## serving benchmark through the image (BENCHMARKS.md); results in bench-results/
	$(UV) run --frozen python scripts/bench_serve.py

bench-peers: build peer-images .venv/.synced data  ## the serving image beside AWS's own PyTorch serving stacks, same model and CPU (BENCHMARKS.md)
	$(UV) run --frozen python scripts/bench_peers.py

bench-cpu-graph: build  ## each architecture eager against graph mode on this CPU, and graph mode's memory, in the serving image (BENCHMARKS.md)
	@mkdir -p bench-results
	docker run --rm --network none --entrypoint python $(SERVING_IMAGE) -m byoc.serving.benchmark --compare-graph \
	  | tee bench-results/cpu_graph.json
	docker run --rm --network none --entrypoint python $(SERVING_IMAGE) -m byoc.serving.benchmark --graph-memory \
	  --architecture resnet50 | tee bench-results/cpu_graph_memory.json

peer-images: engine  ## AWS's two PyTorch serving stacks FROM SERVING_IMAGE, for bench-peers (containers/peers/Dockerfile)
	for peer in mms torchserve; do \
	  docker buildx build -q -f containers/peers/Dockerfile --build-arg SERVING_IMAGE=$(SERVING_IMAGE) \
	    --target $$peer-peer -t byoc-peer-$$peer:latest $(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) . || exit 1; \
	done

bench-soak: build .venv/.synced data  ## 60 s of good and hostile requests at concurrency 16 (BENCHMARKS.md); results in bench-results/
	$(UV) run --frozen python scripts/bench_soak.py

bench-serverless-memory: build .venv/.synced  ## the smallest serverless memory size the serving image runs in (BENCHMARKS.md)
	$(UV) run --frozen python scripts/bench_serverless_memory.py

bench-multi-host: build .venv/.synced data  ## training images/s on 1 and 2 local hosts (BENCHMARKS.md)
	scripts/bench-multi-host.sh

bench-stop: build .venv/.synced data  ## seconds from SIGTERM to exit of a job stopped mid-epoch (BENCHMARKS.md)
	$(UV) run --frozen python scripts/bench_stop.py

clean:  ## stop services, remove ./opt_ml and caches (keeps data, .venv and images)
	-docker compose --profile multi down --remove-orphans
	rm -rf opt_ml .pytest_cache
