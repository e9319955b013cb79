# Included by infra/layers/<layer>/Makefile. `sam build` (BuildMethod: makefile) runs
# `make -f <that Makefile> build-<LayerLogicalId>` in a scratch copy of the layer's folder, with
# ARTIFACTS_DIR set; everything lands in $(ARTIFACTS_DIR)/python (/opt/python on Lambda).
# Paths here are absolute, from this file's location, so the scratch copy does not matter.
LAYERS_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
REPO_ROOT  := $(abspath $(LAYERS_DIR)/../..)
# `sam build` itself needs python3.12 on PATH (the root Makefile puts it there).
PYTHON312  ?= python3.12
TARGET      = $(ARTIFACTS_DIR)/python

# Wheels for Lambda's python3.12 on x86_64 (Amazon Linux 2023, glibc 2.34) whatever the host is:
# binary only, and no resolver: the lock file is the closed list of what goes in.
PIP_INSTALL = $(PYTHON312) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
	--only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
	--python-version 3.12 --implementation cp --target $(TARGET)

# Never used at run time: test suites, type stubs, console scripts (their shebangs name the build host).
define trim
	rm -rf $(TARGET)/bin
	find $(TARGET) -type d -name tests -prune -exec rm -rf {} +
	find $(TARGET) -name '*.pyi' -delete
endef

# Python 3.12 byte-code that is used without checking the source's mtime: /opt is read-only (nothing
# can be cached at run time) and a zip keeps mtimes to 2 s, which breaks timestamp-checked .pyc files.
define compile
	$(PYTHON312) -m compileall -q -j 0 --invalidation-mode unchecked-hash $(TARGET)
endef
