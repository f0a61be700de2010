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
# DAGSTER_HOME is not set here: each profile has its own home, chosen by resources/instance.py (a DAGSTER_HOME you set wins).

.PHONY: feast-contract servers cluster-up cluster-down cluster-demo setup chromium demo lint test test-fast dev bench clean

$(UV):
	@scripts/check_prereqs.sh
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on these machines), every
# process would otherwise compile each module it imports from source, seconds per Dagster process.
$(STAMP): $(UV) uv.lock pyproject.toml scripts/fetch_jars.py Makefile
	@scripts/check_prereqs.sh
	$(UV) sync --frozen --compile-bytecode --extra cluster --python $(PYTHON)
	$(BIN)/python scripts/fetch_jars.py
	@touch $@

# The browser tests drive Debian's chromium: installed with apt-get when missing, a no-op after.
chromium:
	@scripts/check_prereqs.sh chromium

# dagster-dbt reads the manifest when the code loads; parsed here, only when a dbt file changed, so
# that loading the code does not (resources/dbt.py parses only a missing or stale manifest).
DBT_MANIFEST := dbt/target/manifest.json
$(DBT_MANIFEST): $(STAMP) dbt/dbt_project.yml dbt/profiles.yml $(wildcard dbt/models/* dbt/macros/* dbt/seeds/* dbt/tests/*/*)
	cd dbt && ../$(BIN)/dbt parse --quiet --profiles-dir .
	@touch $@

# The cluster profile's servers from Debian (Redis, PostgreSQL): installed with apt-get when missing.
servers:
	@scripts/check_prereqs.sh servers

# What the local profile runs on (make demo, make dev); the browser and the servers come with make test and make cluster-up.
setup: $(STAMP) $(DBT_MANIFEST)

# The cluster profile's servers on 127.0.0.1 (scripts/cluster.py): started, healthy, bucket and databases made.
cluster-up: setup servers
	$(BIN)/python scripts/cluster.py up
	@echo "point the cluster profile at them: eval \"\$$($(BIN)/python scripts/cluster.py env)\""

cluster-down:
	$(BIN)/python scripts/cluster.py down

# The demo on the cluster profile: the same window, the transformations on the Spark cluster, every table on the object store.
cluster-demo: cluster-up
	$(BIN)/python scripts/demo.py --cluster

demo: setup
	$(BIN)/python scripts/demo.py

# Two workers, a module at a time each (tests/conftest.py orders them, and keeps the cluster modules on one).
# They keep both cores busy: a third worker measured the machine 98% busy and the suite no shorter.
PYTEST := $(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

# Lint, formatting and types (their settings are in pyproject.toml): the suite does not run on a finding.
# `ruff format .` and `ruff check --fix .` fix most of what they report.
lint: $(STAMP)
	$(BIN)/ruff check --quiet .
	$(BIN)/ruff format --check --quiet .
	$(BIN)/mypy

# The browser tests drive chromium; the cluster tests start Redis and PostgreSQL.
test: setup lint chromium servers
	$(PYTEST)

# The inner loop: no JVM, no end-to-end runs, no browser, no servers.
test-fast: setup lint
	$(PYTEST) -m "not slow"

# The profile's Dagster home, its dagster.yaml written for the profile (resources/instance.py: SQLite locally, PostgreSQL on the cluster).
dev: setup
	@home=$$($(BIN)/python -m resources.instance) && echo "DAGSTER_HOME=$$home" && DAGSTER_HOME=$$home exec $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1

bench: setup
	$(BIN)/python bench/materialize_demo.py

# Feast's own universal offline-store suite against the Delta offline store; FEAST_SRC is a checkout of
# feast-dev/feast (its tests are not in the PyPI package).
feast-contract: setup
	@test -n "$(FEAST_SRC)" || { echo "usage: make feast-contract FEAST_SRC=<checkout of feast-dev/feast>" >&2; exit 2; }
	feast_contract/run.sh $(FEAST_SRC)

clean:
	rm -rf data $(VENV) $(TOOLS)
