#!/usr/bin/env bash
# Creates the Airflow and MLflow databases and their owners on the first start of the volume.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
create user airflow with password '${AIRFLOW_DB_PASSWORD}';
create database airflow owner airflow;
create user mlflow with password '${MLFLOW_DB_PASSWORD}';
create database mlflow owner mlflow;
SQL
