# The two commands of the README:  `make dev`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps tools test lint unit dev cluster-up cluster-down clean generate checkov

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

# Debian packages (operator/commerce_jobs/devcluster/debian-packages.txt): installed as root, or the command is printed.
system-deps:
	bash operator/commerce_jobs/devcluster/system-deps.sh

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok and helm, built from Go modules at
# pinned versions into ~/.cache/commerce-jobs (cold: ~20 min on 2 cores; warm: nothing to do).
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

dev: tools
	$(BIN)/commerce-jobs dev

cluster-up: tools
	$(BIN)/commerce-jobs dev-cluster up

cluster-down: install
	$(BIN)/commerce-jobs dev-cluster down

clean:
	rm -rf $(VENV) .venv-checkov .pytest_cache .ruff_cache .mypy_cache

# Regenerate what is generated (tests fail when these drift): the CRDs (crds/ and the chart's) and manifests/install.yaml.
generate: install
	$(BIN)/python -m commerce_jobs.crd
	$(BIN)/python -m commerce_jobs.devcluster.render

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
