# Two entry points for a fresh machine: `make demo` and `make test`. Each installs what it needs first.
# `make test-fast` is the inner loop: the suite without the tests marked slow (browser, processes, HA proof, …).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck install prerequisites clean chaos

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "benchwatch needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/benchwatch demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

prerequisites:
	scripts/test-prerequisites.sh

test: $(STAMP) prerequisites lint typecheck
	$(BIN)/pytest

test-fast: $(STAMP) prerequisites
	$(BIN)/pytest -m "not slow"

chaos: $(STAMP)
	$(BIN)/python -m benchmarks chaos

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
