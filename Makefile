# cdf-pipeline: every command a developer needs. `make help` lists them.
# The first target that needs them creates .venv and installs the project (once).

# A pyenv shim exists for every version pyenv knows and fails (on stderr) for one not installed:
# each candidate's own complaint is silenced, only the final verdict speaks.
PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3; do \
	command -v $$p >/dev/null 2>&1 \
	&& $$p -c 'import sys; sys.exit(not ((3,10) <= sys.version_info[:2] <= (3,12)))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROOT ?= ./lakehouse
DEMO_ROOT ?= ./lakehouse-demo
# Tenant ids (their landing prefixes) the AWS stack is rendered for (docs/deploy-aws.md).
TENANTS ?= acme,globex
# Test processes (pytest-xdist): each may start a Spark driver (2 GB heap) and child JVMs.
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install jars-all demo test test-fast lint typecheck docs bench stack clean

help: ## list the commands
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.10-3.12 not found on PATH" >&2; exit 2; }
	@command -v java >/dev/null 2>&1 || { echo "error: Java 17 not found on PATH (Spark needs it)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@echo "resolving the embedded default's Spark jar from Maven Central (once; cached in ~/.ivy2)"
	$(BIN)/cdf jars --resolve >/dev/null
	@touch $(STAMP)

jars-all: $(STAMP) ## resolve the jars of every profile (the AWS SDK alone is ~280 MB; cached)
	$(BIN)/cdf jars --all --resolve >/dev/null

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## the main command: generate two tenants, run the silver job twice, print summaries
	$(BIN)/python -m cdf_pipeline.demo --root $(DEMO_ROOT)

test: jars-all ## the whole test suite (what CI runs), in TEST_WORKERS processes
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP) ## the suite without tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check src jobs tests benchmarks deploy
	$(BIN)/ruff format --check src jobs tests benchmarks deploy

typecheck: $(STAMP) ## mypy on the library and the generator (src/)
	$(BIN)/mypy

docs: $(STAMP) ## regenerate docs/contracts.md from the contracts
	$(BIN)/cdf contracts --write docs/contracts.md

bench: $(STAMP) ## run every benchmark script (prints the figures for docs/benchmarks.md)
	$(BIN)/python benchmarks/generator_bench.py
	$(BIN)/python benchmarks/silver_bench.py
	$(BIN)/python benchmarks/telemetry_bench.py
	$(BIN)/python benchmarks/catalog_bench.py

stack: $(STAMP) ## render the AWS CloudFormation stack for TENANTS into cdf-stack.json and lint it
	$(BIN)/python deploy/synth.py --tenants $(TENANTS) --output cdf-stack.json
	$(BIN)/cfn-lint cdf-stack.json

clean: ## remove the local lakehouse and caches (keeps .venv)
	rm -rf $(ROOT) $(DEMO_ROOT) .pytest_cache .mypy_cache .ruff_cache spark-warehouse
