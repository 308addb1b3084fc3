# Quick start: `make run` serves the default config on :8080; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/router.yaml

.PHONY: run test lint check bench clean

$(BIN)/beacon-router: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,fast]'
	touch $@

run: $(BIN)/beacon-router
	$(BIN)/beacon-router serve --config $(CONFIG)

test: $(BIN)/beacon-router
	$(BIN)/python -m pytest -q

lint: $(BIN)/beacon-router
	$(BIN)/ruff check router tests
	$(BIN)/mypy router

check: $(BIN)/beacon-router
	$(BIN)/beacon-router check --config $(CONFIG)

bench: $(BIN)/beacon-router
	bench/run

clean:
	rm -rf $(VENV) data .pytest_cache
