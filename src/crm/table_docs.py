"""What the published tables mean, for BI tools: each table's and column's description, taken from the
dbt project (the models' and sources' YAML, as compiled into dbt's manifest.json), written as comments
on the published copies (COMMENT ON), where BI tools show them beside the tables and columns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from crm.settings import Settings


@dataclass(frozen=True)
class TableDoc:
    description: str
    columns: dict[str, str]


def published_docs(settings: Settings, tables: list[str]) -> dict[str, TableDoc]:
    """The descriptions of ``tables`` (schema.name) that the dbt project gives, from the manifest of the
    last dbt run on this worker; none without one (nothing has been built here)."""
    manifest = settings.dbt_artifacts_dir / "target" / "manifest.json"
    return docs_from_manifest(manifest, tables) if manifest.exists() else {}


def docs_from_manifest(manifest: Path, tables: list[str]) -> dict[str, TableDoc]:
    content = json.loads(manifest.read_text())
    wanted = set(tables)
    docs = {}
    for node in [*content.get("nodes", {}).values(), *content.get("sources", {}).values()]:
        if node.get("resource_type") not in ("model", "source"):
            continue
        table = f"{node['schema']}.{node.get('alias') or node.get('identifier') or node['name']}"
        if table not in wanted:
            continue
        columns = {
            name: _plain(column["description"])
            for name, column in node.get("columns", {}).items()
            if column.get("description")
        }
        docs[table] = TableDoc(_plain(node.get("description") or ""), columns)
    return docs


def comment_statements(table: str, doc: TableDoc, columns: list[str], prefix: str = "") -> list[str]:
    """COMMENT ON statements (DuckDB's and PostgreSQL's) for ``prefix + table`` and those of its
    ``columns`` that have a description."""
    target = prefix + table
    statements = [f"comment on table {target} is {_literal(doc.description)}"] if doc.description else []
    return statements + [
        f"comment on column {target}.{column} is {_literal(doc.columns[column])}"
        for column in columns
        if column in doc.columns
    ]


def _plain(text: str) -> str:
    """One line: YAML's folded text and its trailing newline as spaces."""
    return " ".join(text.split())


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
