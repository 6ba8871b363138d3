# GridChain developer entry points. Every target installs what it needs itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/lock.txt
# `make lock` runs this exact uv from its own venv (.tools/), never whatever uv is on PATH.
UV_VERSION := 0.13.9
TOOLS  := .tools
DEVNET_HOME ?= .devnet
DEVNET_NODES ?= 4
DEVNET_PORT ?= 7100

.PHONY: install lock tools test test-fast lint sim-sweep devnet bench compose-up compose-down clean

install: $(STAMP)

# Exactly the locked versions (hash-checked), then the project itself without touching them.
$(STAMP): $(LOCK) uv.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

## Re-resolve uv.lock (the lock: runtime + dev + build backend, every platform) from
## pyproject.toml's ranges, then export its pip-installable forms with hashes:
## requirements/lock.txt (everything, what `make install` installs) and
## requirements/runtime.txt (the runtime subset: the image's wheelhouse).
lock:
	test -x $(TOOLS)/bin/uv && $(TOOLS)/bin/uv --version | grep -q ' $(UV_VERSION) ' \
		|| { $(PYTHON) -m venv $(TOOLS) && $(TOOLS)/bin/pip install --quiet 'uv==$(UV_VERSION)'; }
	$(TOOLS)/bin/uv lock --quiet --upgrade
	$(TOOLS)/bin/uv export --quiet --frozen --no-emit-project --all-extras --all-groups -o $(LOCK)
	$(TOOLS)/bin/uv export --quiet --frozen --no-emit-project --no-dev -o requirements/runtime.txt

## The command-line tools the deploy-file checks need (shellcheck, docker-compose, promtool).
tools:
	bash deploy/install-tools.sh

lint: install
	$(BIN)/ruff check consensus contracts node tests
	$(BIN)/mypy

## Everything: lint, types, unit, property, simulator sweep, integration and the docker e2e test.
test: tools install lint
	$(BIN)/pytest -q -n 2 --dist loadgroup -m "not e2e" tests
	$(BIN)/pytest -q -m e2e tests/e2e

## Everything but the docker e2e test.
test-fast: tools install lint
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
	rm -rf $(VENV) $(TOOLS) $(DEVNET_HOME) .pytest_cache .mypy_cache .ruff_cache .hypothesis
