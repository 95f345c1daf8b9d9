# One image for every Airflow service, the MLflow server and the dashboard, built from the committed lock files.

# Data Docs' scripts and stylesheets (crm.data_docs), from npm at the locked versions.
FROM node:20-slim AS data-docs-assets
WORKDIR /assets
COPY expectations/data_docs_assets/package.json expectations/data_docs_assets/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim

# Bytecode is compiled once at build time: the image never writes it, and every task would compile its imports.
ENV PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/crm/.venv \
    UV_LINK_MODE=copy \
    CRM_HOME=/srv/crm \
    AIRFLOW_HOME=/srv/airflow \
    PATH=/opt/crm/.venv/bin:$PATH

WORKDIR /opt/crm
COPY pyproject.toml uv.lock ./
RUN pip install --no-cache-dir "uv==$(sed -n '/^name = "uv"$/{n;s/^version = "\(.*\)"$/\1/p;}' uv.lock)" \
    && uv sync --frozen --no-dev --no-install-project

COPY src ./src
COPY ml ./ml
COPY dags ./dags
COPY dbt_project ./dbt_project
COPY expectations ./expectations
COPY --from=data-docs-assets /assets/node_modules ./expectations/data_docs_assets/node_modules
# The volumes' mount points exist here, owned by the image's user: Docker gives a new named volume the
# owner of the folder it is mounted over, so the services can write their volumes.
RUN uv sync --frozen --no-dev \
    && useradd --create-home --uid 50000 crm \
    && mkdir -p /srv/crm/data /srv/crm/warehouse /srv/airflow/logs /srv/mlflow/artifacts \
    && chown -R crm /srv /opt/crm

USER crm
