# The two commands of the README:  `make dev`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help install system-deps tools test lint unit dev cluster-up cluster-down clean generate verify

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed ## the virtualenv .venv with the project and its test tools

# Debian packages (operator/commerce_jobs/devcluster/debian-packages.txt): installed as root, or the command is printed.
system-deps: ## the Debian packages of the suite (as root; else prints the apt-get command)
	bash operator/commerce_jobs/devcluster/system-deps.sh

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm, built from Go modules at
# pinned versions into ~/.cache/commerce-jobs (cold: ~20 min on 2 cores; warm: nothing to do).
tools: install system-deps ## build (or reuse) the control plane's Go binaries
	$(BIN)/commerce-jobs dev-cluster build

lint: install ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install ## the unit tests only (no cluster)
	$(BIN)/pytest tests/unit

test: tools lint ## lint, then the whole suite against real control planes
	$(BIN)/pytest

dev: tools ## the local control plane, the operator against it and the samples
	$(BIN)/commerce-jobs dev

cluster-up: tools ## the local control plane only
	$(BIN)/commerce-jobs dev-cluster up

cluster-down: install ## stop the local control plane
	$(BIN)/commerce-jobs dev-cluster down

clean: ## remove .venv and the tools' caches of this checkout
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Regenerate what is generated (tests fail when these drift): the CRDs (crds/ and the chart's) and manifests/install.yaml.
generate: install ## regenerate the CRDs and manifests/install.yaml
	$(BIN)/python -m commerce_jobs.crd
	$(BIN)/python -m commerce_jobs.devcluster.render

# What `make generate` writes must be what is committed: CI fails on a drift.
verify: generate ## regenerate, then fail if anything generated differs from what is committed
	git diff --exit-code -- crds charts/commerce-jobs/crds manifests/install.yaml
