# Vitrine: every entry point. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
REQS := requirements/torch.txt requirements/base.txt requirements/nodeps.txt requirements/constraints.txt
# pip prints a warning per package for each unreadable local index; they are noise here.
QUIET_PIP := { grep -v 'is ignored: it is neither a file nor a directory' || true; }
PYTEST_ARGS ?=
# `make run CATALOG=../shared/data/myntra`: a products.jsonl (or its folder) to index instead of
# the synthetic demo catalog, served by a bundle trained for it (scripts/run.sh).
CATALOG ?=
# `make run CATALOG=PATH TRAIN_CONFIG=training/configs/catalog-combined.yaml`: how its bundle is trained.
TRAIN_CONFIG ?=

# No RAY_AUTH_MODE here: `make run` turns Ray's token auth on (scripts/run.sh); the tests, the
# benchmarks and training set it for the in-process Ray each of them starts.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install tools test unit integration chaos run protos protos-check lint format bench clean k8s-serve-config k8s-check

help: ## List the targets with what they do
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): $(REQS) pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@echo "==> installing into $(VENV) (torch first, then exact pins)"
	$(PIP) install -q pip==26.0.1 2>&1 | $(QUIET_PIP)
	$(PIP) install -q -r requirements/torch.txt 2>&1 | $(QUIET_PIP)
	$(PIP) install -q -r requirements/base.txt -c requirements/constraints.txt 2>&1 | $(QUIET_PIP)
	$(PIP) install -q --no-deps -r requirements/nodeps.txt 2>&1 | $(QUIET_PIP)
	$(PIP) install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	@$(PY) scripts/check_install.py
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the exact pinned dependencies (idempotent; fast when done)

protos: $(STAMP) ## Regenerate shared/api from protos/ with the pinned grpcio-tools
	PYTHON=$(PY) scripts/gen_protos.sh
	@echo "regenerated shared/api; commit it"

protos-check: $(STAMP) ## Fail if shared/api differs from a fresh generation of protos/
	@PYTHON=$(PY) scripts/check_protos.sh

lint: $(STAMP) ## Run ruff and mypy (pyproject.toml [tool.mypy]) over the code and check module and function sizes
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/check_sizes.py

format: $(STAMP) ## Reformat the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

tools: $(STAMP) ## Fetch the test-only third-party tools: Debian's kcat and promtool (.venv/opt), chromium and chromedriver (apt, as root)
	@scripts/fetch_kcat.sh
	@scripts/fetch_promtool.sh
	@scripts/install_chromium.sh

test: $(STAMP) tools protos-check lint ## Install if needed, check protos and lint, run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP) ## Run the unit tests only (no Ray, broker or Qdrant)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) tools ## Run the integration tests only (real Ray, broker, Qdrant)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# The acceptance sizes of docs/RELIABILITY.md; `make test` runs the same tests smaller.
CHAOS_ENV := VITRINE_FUZZ_REQUESTS=4000 VITRINE_FUZZ_RAW=2000 VITRINE_FUZZ_HTTP=1500 \
	VITRINE_FUZZ_FUSION=1000 VITRINE_FEED_EVENTS=5000 VITRINE_CHAOS_ITEMS=5000 \
	VITRINE_CHAOS_KILLS=5 VITRINE_CHAOS_CLIENTS=32 VITRINE_CHAOS_LOAD_S=60 VITRINE_CHAOS_OUTAGE_S=15

chaos: $(STAMP) tools ## Fault, fuzz and load tests at full size (8,500 fuzzed requests, 5,000 hostile feed records, 5,000-event SIGKILL stream, 60 s load); writes docs/RELIABILITY.md
	@mkdir -p build && rm -f build/reliability.jsonl
	$(CHAOS_ENV) VITRINE_RELIABILITY_REPORT=build/reliability.jsonl $(PY) -m pytest tests/integration/reliability $(PYTEST_ARGS)
	$(PY) scripts/reliability_report.py build/reliability.jsonl docs/RELIABILITY.md

k8s-serve-config: $(STAMP) ## Re-render deploy/serve/vitrine.yaml into the RayServices' Serve configs (deploy/k8s)
	$(VENV)/bin/vitrine deploy serve-config

k8s-check: $(STAMP) ## Render every Kubernetes overlay and validate it (schemas, Serve imports, env vars); no cluster
	$(VENV)/bin/vitrine deploy check

run: $(STAMP) ## Bring up the platform and make the demo catalog searchable; CATALOG=PATH indexes a products.jsonl instead (Ctrl-C stops everything)
	@CATALOG="$(CATALOG)" TRAIN_CONFIG="$(TRAIN_CONFIG)" scripts/run.sh

bench: $(STAMP) ## Run the benchmarks and write docs/BENCHMARKS.md
	$(PY) -m bench

clean: ## Remove caches and build output (keeps .venv)
	rm -rf .pytest_cache .ruff_cache .mypy_cache build *.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
