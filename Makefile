# GridChain developer entry points. Every target installs what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVNET_HOME ?= .devnet
DEVNET_NODES ?= 4
DEVNET_PORT ?= 7100

.PHONY: install test test-fast lint sim-sweep devnet bench compose-up compose-down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check consensus contracts node tests
	$(BIN)/mypy

## Everything: lint, types, unit, property, simulator sweep, integration and the docker e2e test.
test: install lint
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not e2e" tests
	$(BIN)/pytest -q -m e2e tests/e2e

## Everything but the docker e2e test.
test-fast: install lint
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not e2e" tests

## The long local simulator sweep (10,000 seeded runs).
sim-sweep: install
	$(BIN)/python -m node.sim.sweep --runs 10000 --jobs 2

## A local 4-node consortium on 127.0.0.1 with SQLite storage, trading a demo day.
devnet: install
	$(BIN)/gridchain devnet --nodes $(DEVNET_NODES) --home $(DEVNET_HOME) --base-port $(DEVNET_PORT) --demo

bench: install
	$(BIN)/gridchain bench --nodes 4

compose-up: install
	bash deploy/compose-up.sh

compose-down:
	bash deploy/compose-down.sh

clean:
	rm -rf $(VENV) $(DEVNET_HOME) .pytest_cache .mypy_cache .ruff_cache .hypothesis
