# `make train` and `make test` are the whole set-up on a fresh clone (Python 3.10+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Installs the project with its dev extras (tests, lint, baseline, sweeps); redone when
# pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

train: $(STAMP)
	$(BIN)/python -m lrexp.train data=toy

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache dist build src/*.egg-info
