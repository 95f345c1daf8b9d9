"""A dbt-duckdb plugin that gives every dbt connection the PII hash key, and only as HMAC pads.

dbt allows secret environment variables (``DBT_ENV_SECRET_*``) only in profiles.yml, so the key
reaches SQL through this plugin: profiles.yml hands it over, and each connection and cursor gets
the HMAC-SHA256 inner and outer pads as session variables. The dbt macro ``hash_pii`` completes
HMAC with DuckDB's built-in ``sha256``, so the key never appears in compiled SQL, dbt's logs or
the warehouse file, and a mart's hash equals ``Settings.hash_pii`` of the same value.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from crm.settings import Settings, hmac_pads

INNER_PAD_VARIABLE = "pii_hmac_inner"
OUTER_PAD_VARIABLE = "pii_hmac_outer"


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # Airflow's dbt tasks get no key in their environment (it would be stored with the DAG and
        # shown as a rendered field): the settings give it, from CRM_PII_HASH_KEY or the home's secret.
        key = str(plugin_config.get("pii_hash_key") or "") or Settings.from_env().pii_hash_key()
        self._pads = hmac_pads(key)

    def configure_connection(self, conn: Any) -> None:
        self._set_pads(conn)

    def configure_cursor(self, cursor: Any) -> None:
        # Session variables belong to one DuckDB connection; every dbt thread works on its own cursor.
        self._set_pads(cursor)

    def _set_pads(self, conn: Any) -> None:
        inner, outer = self._pads
        conn.execute(f"set variable {INNER_PAD_VARIABLE} = ?", [inner])
        conn.execute(f"set variable {OUTER_PAD_VARIABLE} = ?", [outer])
