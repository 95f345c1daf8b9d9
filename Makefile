# Two commands do everything on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv bootstraps from pip at the version the lock file pins, so there is one source of truth.
UV_VERSION := $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)
export CRM_HOME ?= $(CURDIR)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: install browser java run ui stop screenshots test bench clean

DATA_DOCS_ASSETS := expectations/data_docs_assets

install: $(VENV)/.installed $(DATA_DOCS_ASSETS)/node_modules/.installed

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as in most container
# images) every process would otherwise compile its imports again, about 5 s per pipeline stage.
$(VENV)/.installed: pyproject.toml uv.lock Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen --compile-bytecode
	touch $@

# The scripts and stylesheets Great Expectations' Data Docs load from CDNs, at the locked versions from
# npm's registry, so that the sites work offline (crm.data_docs). Without npm they keep their CDN links.
$(DATA_DOCS_ASSETS)/node_modules/.installed: $(DATA_DOCS_ASSETS)/package.json $(DATA_DOCS_ASSETS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(DATA_DOCS_ASSETS) --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: Data Docs will load their scripts from CDNs (install Node.js and npm for offline Data Docs)"; fi

run: install
	$(BIN)/crm run

# Airflow (api-server, scheduler, dag-processor, triggerer), MLflow and the dashboard on loopback; Ctrl-C or
# `make stop` ends them.
ui: install
	$(BIN)/crm ui

# Refuses while a DAG run is in progress (it names the runs); FORCE=1 stops them anyway.
stop: install
	$(BIN)/crm stop $(if $(FORCE),--force)

# docs/dashboard.png, docs/airflow_crm_daily.png, docs/mlflow_models.png from the home's last run (after `make run`).
screenshots: install browser
	$(BIN)/crm screenshots

# Debian's Chromium and ChromeDriver for the UI screenshot tests (installed only where missing and run as root).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# Java for Apache Spark (CRM_WAREHOUSE_URL=spark+session://, and the Spark equivalence test): Debian's
# OpenJDK 17, installed only where no java is found and run as root.
java:
	@command -v java >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null)

# Lint first (seconds), then the suite on two pytest-xdist workers, a test file to a worker in the
# order tests/conftest.py gives (docs/testing.md); pytest ends with the 15 slowest tests.
test: install browser java
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder

# A benchmark, not a test: measures the stages at 100k, 300k and 1M customers, reports to bench/results/
# BENCH_ARGS adds options, e.g. BENCH_ARGS="--customers 100000 --postgres postgresql+psycopg://user@host:5432"
# for a PostgreSQL section beside the embedded warehouse, BENCH_ARGS="--customers 100000 --spark" for a
# Spark one (a local session on CRM_SPARK_MASTER, default local[2]).
bench: install
	$(BIN)/crm bench $(BENCH_ARGS)

clean:
	rm -rf data warehouse .airflow mlflow/mlflow.db mlflow/artifacts expectations/uncommitted
