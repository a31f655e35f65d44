# immunreg: two commands do all set-up on a fresh machine.
#   make run   - install what is missing, start PostgreSQL, Kafka and every service, load demo data
#   make test  - the same set-up, then ruff, mypy and the whole pytest suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: run stop test lint unit integration e2e faults rehearse bench load infra install browser softhsm kustomize axe clean help

help:
	@echo "make run    start PostgreSQL, Kafka and every service (Ctrl-C stops them)"
	@echo "make test   lint, type-check and run the whole suite"
	@echo "make bench  benchmarks; figures go to bench/results.json"
	@echo "make load   a national day (1% of Serbia, 10 min) over HTTP, books checked; report in loadtests/reports/"
	@echo "make faults the whole fault matrix under load; table to bench/faults.md"
	@echo "make rehearse  a newcomer's sequence: run, Ctrl-C, test, run, Ctrl-C, test"
	@echo "make stop   stop what make run started"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Debian's Chromium, for the dashboard's browser test (installed once, only if missing).
browser:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Debian's SoftHSM, the PKCS#11 token the certificates' HSM signing test keeps its DSC key in
# (installed once, only if missing).
softhsm:
	@command -v softhsm2-util >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q softhsm2; }

# kustomize, built once from the Go module proxy with the machine's Go, for the suite's
# render of deploy/k8s (tests/unit/deploy). Installed only if missing.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := .cache/tools/bin/kustomize
$(KUSTOMIZE):
	GOBIN=$(CURDIR)/.cache/tools/bin GOFLAGS=-mod=mod go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

kustomize: $(KUSTOMIZE)

# axe-core from npm, for the portal's browser test (an accessibility check of every page
# it visits). Pinned; fetched into .cache/ once, only if missing.
AXE_VERSION := 4.11.0
AXE := .cache/tools/axe-core-$(AXE_VERSION)/node_modules/axe-core/axe.min.js
$(AXE):
	npm install --silent --no-audit --no-fund --no-save --prefix .cache/tools/axe-core-$(AXE_VERSION) axe-core@$(AXE_VERSION)

axe: $(AXE)

infra: install
	$(BIN)/immunreg infra up

run: install
	$(BIN)/immunreg run

stop: install
	$(BIN)/immunreg stop

# `mypy` checks the code and tests/ except the test folders that have a conftest.py of their own:
# pytest imports each such conftest.py as the top-level module `conftest`, and one mypy run
# holds only one. Each gets a run of its own (see [tool.mypy] in pyproject.toml).
MYPY_OWN_RUNS := tests/e2e tests/unit/certificates tests/unit/http

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	set -e; for folder in $(MYPY_OWN_RUNS); do $(BIN)/mypy $$folder/*.py; done

unit: install kustomize
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

integration: infra browser softhsm
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

e2e: infra browser axe
	$(BIN)/pytest tests/e2e -q $(PYTEST_ARGS)

# --durations: the suite's 25 slowest tests, printed at the end, so that a suite creeping
# towards CI's 30 minutes shows where the time went.
test: infra browser softhsm kustomize axe lint
	$(BIN)/pytest tests -q --durations=25 $(PYTEST_ARGS)

# Every fault case (a service killed, the broker and the database restarted, a consumer
# paused, a replica killed) under a steady stream of writes, with the books checked after
# each; `make test` runs a short form. The table goes to bench/faults.md.
faults: infra
	FAULT_CASES=all FAULT_RESULTS=bench/faults.md $(BIN)/pytest tests/faults -q $(PYTEST_ARGS)
	@cat bench/faults.md

# What a newcomer does on a fresh clone, scripted: make run (up, demo loaded), Ctrl-C,
# make test, make run again at once, Ctrl-C, make test again. See scripts/rehearse.sh.
rehearse:
	bash scripts/rehearse.sh

bench: infra
	$(BIN)/python -m bench $(BENCH_ARGS)
	@echo "figures written to bench/results.json"

load: infra
	$(BIN)/python -m pip install --quiet -e '.[load]'
	$(BIN)/python -m loadtests.national_day $(LOAD_ARGS)

clean: stop
	rm -rf .cache .mypy_cache .pytest_cache .ruff_cache
