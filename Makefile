# Thin wrappers; README names them. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
# The CPU build goes in first: an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,models,text
# timm/torchvision teachers: `make setup VISION=1`. The registries have no torchvision for the CPU torch
# (torchvision 0.28.0's ops link CUDA torch: "operator torchvision::nms does not exist"); torch 2.14.1 (the
# registry build, CUDA libraries included, runs on CPU) + torchvision 0.29.1 work: 5.6 GB installed instead
# of 1.1 GB, measured in docs/your-model.md.
ifneq ($(VISION),)
TORCH := torch==2.14.1 torchvision==0.29.1
EXTRAS := $(EXTRAS),vision
endif
# The stamp names pyproject.toml's content, not its mtime: a git worktree or fresh checkout (new mtime, same
# content) reuses a venv (`make bench VENV=/work/main/.venv`); an edited pyproject.toml reinstalls.
# A VISION venv also stamps the plain name, so a later plain `make test`/`make demo` does not downgrade torch.
PYPROJECT_SHA := $(shell sha256sum pyproject.toml | cut -c1-12)
STAMP := $(VENV)/.installed$(if $(VISION),-vision)-$(PYPROJECT_SHA)

.PHONY: setup sysdeps benchdeps demo test test-fast lint dvc-yaml bench bench-quick bench-hinton bench-methods bench-text bench-text-embed compile run-local image push registry-set image-test clean bench-inference

setup: $(STAMP)

$(STAMP):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed*
	touch $@ $(VENV)/.installed-$(PYPROJECT_SHA)

# Real Prometheus, promtool and Alertmanager binaries for the monitoring tests (Debian packages).
sysdeps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; }

# `wrk`, the HTTP load generator of the serving benchmark.
benchdeps: sysdeps
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null; }

demo: setup
	dvc repro
	kdflow show metrics

test: setup sysdeps
	$(PY) -m pytest -q -p no:cacheprovider tests

# The inner loop: everything not marked slow (tests/integration is slow as a whole), under 2 minutes.
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

lint: setup
	ruff check .

# dvc.yaml and methods/dvc.yaml from the stage registry (a test fails while they are stale)
dvc-yaml: setup
	kdflow dvc-yaml

# Every benchmark (≤ 30 min on 2 cores): accuracy runs side by side, then timing runs alone; tables in
# benchmarks/results/TABLES.md + README, wall times in results/run_all.json. Teachers of generated data
# are cached by content hash in benchmarks/results/tmp/cache (`rm -rf` it for a cold run).
bench: setup benchdeps
	$(PY) benchmarks/run_all.py

# Small sizes, ≤ 5 min; results in benchmarks/results/quick/ (the full run's stay as they are).
bench-quick: setup benchdeps
	$(PY) benchmarks/run_all.py --quick

# Hinton et al. 2015 §3 on real MNIST (MNIST_DIR: the four official idx files), ≤ 30 min on 2 cores.
MNIST_DIR ?= ../shared/data/mnist
bench-hinton: setup
	$(PY) benchmarks/hinton_mnist.py --data mnist:$(MNIST_DIR)

# SST-2: all-MiniLM-L6-v2 fine-tuned, then distilled (docs/text.md); about 45 min on 2 cores
bench-text: setup
	$(PY) -m pip install -q -e '.[$(EXTRAS),text-bench]'
	$(PY) benchmarks/text_sst2.py $(BENCH_TEXT_ARGS)

# SST-2: the sentence encoder all-MiniLM-L6-v2 distilled into a 4-layer encoder (docs/text.md); ~20 min on a quiet machine (est.)
bench-text-embed: setup
	$(PY) -m pip install -q -e '.[$(EXTRAS),text-bench]'
	$(PY) benchmarks/text_embed.py $(BENCH_TEXT_EMBED_ARGS)

# Inference engine: model × backend × batch samples/s, auto's choice, two copies of one model timed alike.
bench-inference: setup
	$(PY) benchmarks/inference_speed.py

# Method × {accuracy, KD gain, time}, 3 seeds, mnist1d + digits: about an hour on 2 cores (two 1-thread runs).
bench-methods: setup
	rm -rf benchmarks/results/tmp/methods-work
	$(PY) benchmarks/methods.py --work benchmarks/results/tmp/methods-work --threads 1 \
	  --methods kd,dkd,hint,att,born --results benchmarks/results/methods-a & pid=$$!; \
	$(PY) benchmarks/methods.py --work benchmarks/results/tmp/methods-work --threads 1 \
	  --methods ens,onl,off,no,lab --results benchmarks/results/methods-b && wait $$pid
	$(PY) benchmarks/methods.py --merge benchmarks/results/methods-a/methods.json \
	  benchmarks/results/methods-b/methods.json

compile: setup
	kdflow pipeline compile -o pipeline.yaml

run-local: setup
	kdflow pipeline run-local --root kfp_local --cache

# The image: `make image` builds kdflow:$(TAG); `make push REGISTRY=ghcr.io/you` tags, pushes and records
# REGISTRY/kdflow:TAG@sha256:... in manifests/image (the one reference compile and kustomize read).
# BASE_IMAGE is digest-pinned in the Dockerfile; OFFLINE=1 builds from docker/wheelhouse (no index).
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REGISTRY ?=
OFFLINE ?=
image:
	@if [ -n "$(OFFLINE)" ]; then docker/wheelhouse.sh; fi
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  $(if $(OFFLINE),--build-arg PIP_NO_INDEX=1) -t kdflow:$(TAG) .

registry-set:
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=<registry>/<org> (e.g. ghcr.io/you)" >&2; exit 2; }

push: registry-set image
	docker tag kdflow:$(TAG) $(REGISTRY)/kdflow:$(TAG)
	docker push $(REGISTRY)/kdflow:$(TAG)
	$(PY) -m kdflow.cli pipeline image --set "$$(docker inspect --format '{{index .RepoDigests 0}}' \
	  $(REGISTRY)/kdflow:$(TAG) | sed 's|@|:$(TAG)@|')"

# No registry is reachable here: a debootstrap base (docker/build-base.sh) and the offline wheelhouse.
image-test: setup
	KDFLOW_IMAGE_TEST=1 $(PY) -m pytest -q -s -p no:cacheprovider tests/integration/test_image.py

clean:
	rm -rf data/prepared models checkpoints soft_targets metrics registration mlflow.db mlruns
