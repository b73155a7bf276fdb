# `make train` and `make test` are the whole set-up on a fresh clone (Python 3.10+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Real Fashion-MNIST for the short end-to-end run on real data (tests/test_real_data.py):
# Debian's dataset-fashion-mnist.
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: train test datasets lint format bench clean

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

test: $(STAMP) datasets
	$(BIN)/python -m pytest

# Installed with apt-get when missing and run as root; otherwise the test that needs it says
# which package to install.
datasets:
	@if [ ! -d $(FASHION_MNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	fi

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
