# The two commands of the README:  `make dev`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps tools test lint unit dev cluster-up cluster-down clean generate

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Debian packages (operator/commerce_jobs/devcluster/debian-packages.txt): installed as root, or the command is printed.
system-deps:
	bash operator/commerce_jobs/devcluster/system-deps.sh

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm; the real node's kubelet,
# kube-proxy, containerd and pause image; built from Go modules at pinned versions into ~/.cache/commerce-jobs (cold:
# ~30 min on 2 cores; warm: nothing to do). And the real node's images (warm: a hash of their inputs).
tools: install system-deps
	$(BIN)/commerce-jobs dev-cluster build

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

test: tools lint
	$(BIN)/pytest

# REAL_NODE=1: the jobs run in real containers on a real node (containerd, kubelet; needs root), from the demo shop.
# Each builds what it needs that is missing: the kwok-only cluster never waits for the real node's tools or images.
dev: install system-deps
	$(BIN)/commerce-jobs dev $(if $(REAL_NODE),--real-node)

cluster-up: install system-deps
	$(BIN)/commerce-jobs dev-cluster up $(if $(REAL_NODE),--real-node)

cluster-down: install
	$(BIN)/commerce-jobs dev-cluster down

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Regenerate what is generated (tests fail when these drift): the CRDs (crds/ and the chart's) and manifests/install.yaml.
generate: install
	$(BIN)/python -m commerce_jobs.crd
	$(BIN)/python -m commerce_jobs.devcluster.render
