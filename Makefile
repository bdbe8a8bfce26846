# Fabu: the only entry points a newcomer needs.
#   make run     set everything up, start the stack and the services, print the URL
#   make test    set everything up and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench chaos lint format deps venv build stack-up stack-down stack-status clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Go builds and SecantusDB's virtual environment (cached outside the work tree, keyed by
# version) and Debian's docker-registry.
build: venv
	$(PY) -m devstack build

deps: build

stack-up: deps
	$(PY) -m devstack up

stack-down: venv
	$(PY) -m devstack down

stack-status: venv
	@$(PY) -m devstack status

test: deps lint
	$(PY) -m pytest

# Speed and memory, measured on the local stack; prints a table.
bench: deps
	$(PY) -m bench

# Faults while releases run (stage processes, NATS, the local stack's MongoDB-protocol server
# (SecantusDB), the API server), on the local stack; prints a table.
# Then longer random sequences of actions than make test runs (tests/integration/test_sequences.py).
chaos: deps
	$(PY) -m bench.chaos
	FABU_SEQUENCE_EXAMPLES=10 FABU_SEQUENCE_STEPS=30 $(PY) -m pytest tests/integration/test_sequences.py

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

run: stack-up
	$(PY) -m devstack.run

clean: stack-down
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache
