# Two entry points for a newcomer: `make dev` (run Ragline locally) and `make test` (every test tier).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_VERSION := 26.3

.PHONY: dev test install install-test lint lint-infra sam-build package-check clean

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

test: install-test lint lint-infra package-check
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check shared tests bench

# SAM tooling lives in its own venv: aws-sam-cli pins many packages that would clash with ours.
TOOLS_VENV  := .tools-venv
TOOLS_BIN   := $(TOOLS_VENV)/bin
SAM_CLI_VERSION := 1.170.0
CFN_LINT_VERSION := 1.58.0
# sam validate loads a session even offline: fake credentials, fixed region, no telemetry.
SAM_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

$(TOOLS_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION):
	@python3.11 -c 'import sys; assert sys.version_info[:2] == (3, 11)'
	test -x $(TOOLS_BIN)/python || python3.11 -m venv $(TOOLS_VENV)
	$(TOOLS_BIN)/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION) cfn-lint==$(CFN_LINT_VERSION)
	@touch $@

lint-infra: $(TOOLS_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION)
	$(TOOLS_BIN)/cfn-lint template.yaml
	$(SAM_ENV) $(TOOLS_BIN)/sam validate --lint --region us-east-1 --template-file template.yaml

# sam build needs Lambda's interpreter, python3.12, on PATH (the layers' byte-code is compiled by it too):
# pyenv's 3.12.1 when it is installed, else the python3.12 on PATH. Override: make sam-build PYTHON312=...
PYTHON312 ?= $(or $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12),python3.12)
SAM_BUILD_ENV = $(if $(findstring /,$(PYTHON312)),PATH=$(patsubst %/,%,$(dir $(PYTHON312))):$$PATH) \
	PYTHON312=$(PYTHON312) SAM_CLI_TELEMETRY=0

# Builds the seven functions, CoreLayer and EmbeddingLayer (infra/layers) into .aws-sam/build without a
# container, then prints the unzipped sizes against Lambda's limit (fails when over). Needs PyPI access.
# --no-cached: SAM keys a layer's cache on its ContentUri only, so CoreLayer would miss changes to shared/ragline.
sam-build: $(TOOLS_VENV)/.installed-$(SAM_CLI_VERSION)-$(CFN_LINT_VERSION) $(VENV)/.installed
	@$(PYTHON312) -c 'import sys; assert sys.version_info[:2] == (3, 12), "sam build needs python3.12, found " + sys.version'
	@start=$$(date +%s); \
	$(SAM_BUILD_ENV) $(TOOLS_BIN)/sam build --no-cached --parallel --template-file template.yaml && \
	echo "sam build took $$(( $$(date +%s) - start )) s"
	$(BIN)/python infra/layers/smoke.py --sizes

# The built functions start as Lambda would start them (python3.12, only their layers on sys.path).
# Without a python3.12 (sam build needs Lambda's interpreter) it is skipped, loudly, so `make test` still
# runs the other tiers; `make sam-build` itself still fails without one.
PYTHON312_FOUND := $(shell $(PYTHON312) -c 'import sys; print(sys.version_info[:2] == (3, 12))' 2>/dev/null)
ifeq ($(PYTHON312_FOUND),True)
package-check: sam-build
	PYTHON312=$(PYTHON312) $(BIN)/python infra/layers/smoke.py --no-sizes
else
package-check:
	@echo '********************************************************************************************'
	@echo 'SKIPPED package-check: python3.12 not found (PYTHON312=$(PYTHON312)). sam build and the smoke'
	@echo '  check need Lambda'"'"'s interpreter: `pyenv install 3.12.1` (found automatically), or install'
	@echo '  python3.12 on PATH (apt: python3.12; deadsnakes PPA on older Ubuntu), or pass'
	@echo '  `make test PYTHON312=/path/to/python3.12`. The layers and functions were NOT checked.'
	@echo '********************************************************************************************'
endif

clean:
	rm -rf $(VENV) .pytest_cache
