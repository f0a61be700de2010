# Two commands on a fresh machine: `make demo` and `make test`. Everything else they need is installed here.
PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lakehouse-setup

export SPARK_LOCAL_IP ?= 127.0.0.1
export LAKEHOUSE_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(LAKEHOUSE_DATA_DIR)/dagster_home

.PHONY: setup demo test test-fast dev bench clean

$(UV):
	@scripts/check_prereqs.sh
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): $(UV) uv.lock pyproject.toml scripts/fetch_jars.py
	@scripts/check_prereqs.sh
	$(UV) sync --frozen --python $(PYTHON)
	$(BIN)/python scripts/fetch_jars.py
	@touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/pytest

# The inner loop: no JVM, no end-to-end runs.
test-fast: setup
	$(BIN)/pytest -m "not slow"

dev: setup
	@mkdir -p $(DAGSTER_HOME) && test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1

bench: setup
	$(BIN)/python bench/materialize_demo.py

clean:
	rm -rf data $(VENV) $(TOOLS)
