# The two commands of the README:  `make dev`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help install system-deps tools test lint unit dev cluster-up cluster-down clean generate verify checkov

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

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm; the real node's kubelet,
# kube-proxy, containerd and pause image; built from Go modules at pinned versions into ~/.cache/commerce-jobs (cold:
# the control plane's ~21 min on a busy 2-core machine, the real node's tools and images more; warm: nothing to do).
# And the real node's images (warm: a hash of their inputs).
tools: install system-deps ## build (or reuse) the control plane's Go binaries, the real node's and its images
	$(BIN)/commerce-jobs dev-cluster build

lint: install ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install ## the unit tests only (no cluster)
	$(BIN)/pytest tests/unit

test: tools lint ## lint, then the whole suite against real control planes
	$(BIN)/pytest

# REAL_NODE=1: the jobs run in real containers on a real node (containerd, kubelet; needs root), from the demo shop.
# Each builds what it needs that is missing: the kwok-only cluster never waits for the real node's tools or images.
dev: install system-deps ## the local control plane, the operator against it and the samples (REAL_NODE=1: a real node)
	$(BIN)/commerce-jobs dev $(if $(REAL_NODE),--real-node)

cluster-up: install system-deps ## the local control plane only (REAL_NODE=1: with a real node)
	$(BIN)/commerce-jobs dev-cluster up $(if $(REAL_NODE),--real-node)

cluster-down: install ## stop the local control plane
	$(BIN)/commerce-jobs dev-cluster down

clean: ## remove .venv, .venv-checkov and the tools' caches of this checkout
	rm -rf $(VENV) .venv-checkov .pytest_cache .ruff_cache .mypy_cache

# Regenerate what is generated (tests fail when these drift): the CRDs (crds/ and the chart's) and manifests/install.yaml.
generate: install ## regenerate the CRDs and manifests/install.yaml
	$(BIN)/python -m commerce_jobs.crd
	$(BIN)/python -m commerce_jobs.devcluster.render

# What `make generate` writes must be what is committed: CI fails on a drift.
verify: generate ## regenerate, then fail if anything generated differs from what is committed
	git diff --exit-code -- crds charts/commerce-jobs/crds manifests/install.yaml

# A third-party linter of the chart's render (dev-only: pinned, in a virtualenv of its own, never a dependency of the
# project). Where the chart differs from its default checks, a `checkov.io/skipN` annotation on the object says why
# (README, "Quick start on your cluster"); any other finding fails.
CHECKOV_VERSION := 3.3.30
checkov: install ## a third-party linter (checkov, pinned, own virtualenv) of the chart's render
	test -x .venv-checkov/bin/checkov || { $(PYTHON) -m venv .venv-checkov && \
	  .venv-checkov/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION); }
	mkdir -p test-artifacts/checkov
	helm=$$($(BIN)/python -c 'from commerce_jobs.devcluster.toolchain import Toolchain; print(Toolchain.default().path("helm"))') && \
	  $$helm template commerce-jobs charts/commerce-jobs -n commerce-jobs > test-artifacts/checkov/default.yaml && \
	  $$helm template commerce-jobs charts/commerce-jobs -n commerce-jobs -f charts/commerce-jobs/values-production.yaml \
	    --set console.enabled=true --set networkPolicy.enabled=true --set 'networkPolicy.apiServer.cidrs={10.0.0.1/32}' \
	    > test-artifacts/checkov/all-on.yaml
	.venv-checkov/bin/checkov --framework kubernetes --compact --quiet \
	  -f test-artifacts/checkov/default.yaml -f test-artifacts/checkov/all-on.yaml
