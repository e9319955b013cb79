# Two entry points for a newcomer: `make dev` (run Ragline locally) and `make test` (every test tier).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_VERSION := 26.3

.PHONY: dev test install install-test lint clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Ragline needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==$(PIP_VERSION)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

dev: install
	$(BIN)/ragline serve

test: install-test lint
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check shared tests

clean:
	rm -rf $(VENV) .pytest_cache
