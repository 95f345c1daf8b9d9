#!/usr/bin/env bash
# Creates the warehouse, Airflow and MLflow databases and their owners on the first start of the volume,
# and the role BI tools log in with (granted the published schemas by each publication).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
create user airflow with password '${AIRFLOW_DB_PASSWORD}';
create database airflow owner airflow;
create user mlflow with password '${MLFLOW_DB_PASSWORD}';
create database mlflow owner mlflow;
create user crm with password '${WAREHOUSE_DB_PASSWORD}';
create database crm owner crm;
create user crm_bi with password '${BI_DB_PASSWORD}';
revoke all on database crm from public;
grant connect on database crm to crm_bi;
SQL
