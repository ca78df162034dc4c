# Ferry: every developer task is a make target. `make run` and `make test` are the two that matter.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## install uv if missing, then every package and tool from the lock file, compiled to bytecode
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --all-packages --frozen --quiet --compile-bytecode
	@# the workspace's own sources too: a machine with PYTHONDONTWRITEBYTECODE set would otherwise
	@# compile every module again in every process it starts (the CLI, each service, each test)
	@$(UV) run --frozen --no-sync python -m compileall -q -j 0 libs/*/src services/*/src cli/src tools/*/src bench scripts >/dev/null

.PHONY: lint
lint: setup ## ruff lint and format check, import-layer contracts
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports

.PHONY: types
types: setup ## mypy --strict over every package
	$(UV) run mypy libs/*/src services/*/src cli/src tools/*/src bench scripts

.PHONY: test
test: lint types ## lint, types and every test (needs RabbitMQ and PostgreSQL on loopback)
	$(UV) run pytest $(PYTEST_ARGS)

.PHONY: fmt
fmt: setup ## format and auto-fix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

.PHONY: schemas
schemas: setup ## regenerate the event JSON Schemas (docs/events/) and the AsyncAPI document (docs/asyncapi.yaml)
	$(UV) run python -m ferry_events.schema docs/events
	$(UV) run python -m ferry_events.asyncapi docs/asyncapi.yaml

.PHONY: run
run: setup ## run every service locally (REPLICAS=n POSTGRES=postgresql://host/db for n of each)
	$(UV) run python scripts/run_local.py $(if $(REPLICAS),--replicas $(REPLICAS)) $(if $(POSTGRES),--postgres $(POSTGRES))

.PHONY: demo
demo: setup ## the walkthrough, against a running `make run`
	$(UV) run python scripts/demo.py

.PHONY: bench
bench: setup ## every benchmark, one after another, then one table (bench/results/, bench/README.md)
	rm -rf bench/results/parts
	$(MAKE) bench-ingest BENCH_ARGS=--system
	$(MAKE) bench-release bench-watch bench-notify bench-insights bench-history bench-e2e
	$(MAKE) bench-release BENCH_ARGS=--mixed
	$(UV) run python bench/report.py --readme

bench-%: setup ## one benchmark: bench-ingest, bench-release, bench-watch, bench-notify, bench-insights, bench-history, bench-e2e
	$(UV) run python bench/$*.py $(BENCH_ARGS)

.PHONY: clean
clean: ## remove local state (.ferry/) and caches
	rm -rf .ferry .pytest_cache .mypy_cache .ruff_cache
