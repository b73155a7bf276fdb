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

# Debian's package when missing and run as root (otherwise the test that needs it says which
# package to install). The package is data files alone (no maintainer scripts), so unpacking it
# is all its installation does; that needs no writable dpkg database, which a container or a
# private mount namespace (../shared/tools/fresh-clone-test) may not give.
datasets:
	@if [ ! -d $(FASHION_MNIST) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		set -e; tmp=$$(mktemp -d); \
		apt-get update -qq; \
		cd "$$tmp" && apt-get download -qq -o APT::Sandbox::User=root dataset-fashion-mnist; \
		dpkg-deb -x "$$tmp"/dataset-fashion-mnist_*.deb "$$tmp/root"; \
		mkdir -p $(dir $(FASHION_MNIST)); \
		cp -r "$$tmp/root$(FASHION_MNIST)" $(FASHION_MNIST); \
		rm -rf "$$tmp"; \
		echo "installed dataset-fashion-mnist's files in $(FASHION_MNIST)"; \
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
