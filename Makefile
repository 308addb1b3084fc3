# Quick start: `make run` serves the default config on :8080; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/router.yaml

.PHONY: run test test-pure lint check bench clean constraints

# The versions in constraints.txt, so every install (here, CI, the Dockerfile) is the same.
# The test extra brings the postgres and redis extras: the suite runs against both. The editable
# install also builds router/_speedups.c and router/_hmac.c in place with the machine's C compiler
# (setup.py; without one, or without OpenSSL's headers, the pure-Python twins run).
$(BIN)/beacon-router: pyproject.toml constraints.txt setup.py router/_speedups.c router/_hmac.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,fast]'
	touch $@

run: $(BIN)/beacon-router
	$(BIN)/beacon-router serve --config $(CONFIG)

test: $(BIN)/beacon-router
	$(BIN)/python -m pytest -q -n 3

# The parts of the suite whose code has a C twin (filters, ingest, the PostHog API, the source
# profiles' real payloads), run again with the C switched off: what an install without a
# compiler runs must pass the same tests. .ci/run runs it after `make test` (~40 s). Left out:
# the archive's property test (20 s of generated beacons through a router; `make test` runs it).
test-pure: $(BIN)/beacon-router
	BEACON_ROUTER_PURE_PYTHON=1 $(BIN)/python -m pytest -q -n 3 \
		tests/test_speedups.py tests/filters tests/ingest tests/web/posthog tests/sources \
		--deselect tests/sources/test_property_archive.py::test_every_acknowledged_beacon_is_archived

lint: $(BIN)/beacon-router
	$(BIN)/ruff check router tests
	$(BIN)/mypy router

check: $(BIN)/beacon-router
	$(BIN)/beacon-router check --config $(CONFIG)

bench: $(BIN)/beacon-router
	bench/run

# Re-pin constraints.txt from a fresh resolve (after editing pyproject.toml's dependencies).
constraints: $(BIN)/beacon-router
	PIP=$(BIN)/pip .ci/constraints

clean:
	rm -rf $(VENV) data .pytest_cache router/*.so
