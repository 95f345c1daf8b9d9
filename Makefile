# Two commands do everything on a fresh machine with Python 3.11 and make: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv bootstraps from pip at the version the lock file pins, so there is one source of truth.
UV_VERSION := $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)
export CRM_HOME ?= $(CURDIR)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

.PHONY: install run test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv sync --frozen
	touch $@

run: install
	$(BIN)/crm run

test: install
	$(BIN)/pytest

# A benchmark, not a test: measures the stages at 100k and 1M customers, reports to bench/results/.
bench: install
	$(BIN)/crm bench

clean:
	rm -rf data warehouse .airflow mlflow/mlflow.db mlflow/artifacts expectations/uncommitted
