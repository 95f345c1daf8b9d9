"""Right to be forgotten on real engines: `crm erase` leaves no trace of the erased customers in the
landing files, the warehouse or the BI copy, and they stay erased when delivered again."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from crm import data_docs, local_airflow, pipeline
from crm.contracts import CONTRACTS
from crm.erasure import (
    ERASING_SUFFIX,
    NOTHING_FOUND,
    ErasureError,
    Suppression,
    _rewrite_csv,
    _rewrite_jsonl,
    canonical_id,
    erase_landing,
    hash_key_session,
    read_customer_ids,
    record_suppression,
)
from crm.settings import Settings
from crm.warehouse import DuckDBWarehouse

# The request file ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("\n  \n# only a comment\n", "is empty"),
        ("12\nanna@example.com\n", "line 2: not a customer id"),
        ("12\n-4\n", "line 2: not a customer id"),
    ],
)
def test_a_bad_request_file_is_refused_with_a_clear_message(tmp_path: Path, content: str | None, problem: str):
    path = tmp_path / "ids.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ErasureError, match=problem) as refused:
        read_customer_ids(path)
    assert str(path) in str(refused.value)
    assert "anna@example.com" not in str(refused.value)  # a mistaken line may be PII: never echoed


def test_request_file_ids_are_read_once_each(tmp_path: Path):
    path = tmp_path / "ids.txt"
    path.write_bytes(b"\xef\xbb\xbf 42\n# ticket 7\n\n0042\n7\n")
    assert read_customer_ids(path) == [42, 7]


def test_the_cli_refuses_a_missing_file_without_a_stack_trace(tmp_path: Path):
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "erase", "--customer-ids", str(tmp_path / "missing.txt")],
        env={**os.environ, "CRM_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "missing.txt: customer id file does not exist" in completed.stderr
    assert "Traceback" not in completed.stderr


# Rewriting delivered files ------------------------------------------------------------------------


def _suppression(tmp_path: Path, customers: list[str], emails: list[str] = ()) -> Suppression:
    settings = Settings.from_env(home=tmp_path)
    suppression = Suppression(settings)
    suppression.hashes["customer_id"] = {settings.hash_pii(c) for c in customers}
    suppression.hashes["email"] = {settings.hash_pii(e) for e in emails}
    return suppression


def test_a_hostile_csv_loses_only_the_erased_records_and_keeps_every_other_byte(tmp_path: Path):
    contract = CONTRACTS["surveys"]
    kept = [
        b'1,10,2026-01-01T10:00:00,9,5,"quoted\nnewline, and a comma"\r\n',
        b"2,11,2026-01-01T10:00:00,7,4,caf\xe9 not utf-8\r\n",
        b"3,x12,2026-01-01T10:00:00,7,4,'; drop table raw.surveys; --\r\n",
        b"response_id,customer_id,responded_at,nps,csat,comment\r\n",
    ]
    erased = [
        b"4, 0013 ,2026-01-01T10:00:00,3,2,\r\n",
        b'5,13,2026-01-01T10:00:00,3,2,"write to Erased@Example.com"\r\n',
        b"6,99,short line with erased@example.com\r\n",
    ]
    header = b"\xef\xbb\xbfresponse_id,customer_id,responded_at,nps,csat,comment\r\n"
    path = tmp_path / "surveys.csv"
    path.write_bytes(header + kept[0] + erased[0] + kept[1] + erased[1] + kept[2] + erased[2] + kept[3])
    removed, content = _rewrite_csv(contract, path, _suppression(tmp_path, ["13"], ["erased@example.com"]))
    assert removed == 3
    assert content == header + b"".join(kept)


def test_jsonl_lines_of_erased_customers_go_parsed_or_not(tmp_path: Path):
    contract = CONTRACTS["tickets"]
    lines = [
        b'{"ticket_id": 1, "customer_id": "13", "description": "x"}\n',
        b'{"ticket_id": 2, "customer_id": 14, "description": "y"}\n',
        b'{"ticket_id": 3, "customer_id": 13, "description": \n',  # malformed, still theirs
        b'["not an object"]\n',
    ]
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(b"".join(lines))
    removed, content = _rewrite_jsonl(contract, path, _suppression(tmp_path, ["13"]))
    assert removed == 2 and content == lines[1] + lines[3]


def test_ids_hash_alike_in_python_and_dbt_form():
    assert canonical_id(" 0042 ") == canonical_id(42) == canonical_id(42.0) == "42"
    assert canonical_id("4x") is None and canonical_id(None) is None and canonical_id(True) is None


# The whole erasure --------------------------------------------------------------------------------


@dataclass
class Victims:
    requested: list[int]  # what the erasure request names (one CRM id per person)
    customer_ids: set[int]  # every CRM id of those persons, linked by identity resolution
    order_ids: set[int]
    contacts: set[str]  # their emails (lower-cased) and phones, as delivered
    redelivery: dict[str, object]


def _pick_victims(settings: Settings) -> Victims:
    """Three persons with orders, tickets, surveys, marketing events and web sessions; one of them
    has several CRM records, and the request names only its non-surviving id."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        hash_key_session(settings, DuckDBWarehouse(con))
        rows = con.execute("""
            with keys as (
                select customer_key, list(customer_id order by customer_id) as ids
                from staging.int_customer_identity group by customer_key
            ),
            activity as (
                select k.customer_key, k.ids,
                    (select count(*) from raw.orders o where list_contains(k.ids, o.customer_id)) as orders,
                    (select count(*) from raw.tickets t
                     where list_contains(k.ids, try_cast(t.customer_id as bigint))) as tickets,
                    (select count(*) from raw.surveys s
                     where list_contains(k.ids, try_cast(s.customer_id as bigint))) as surveys,
                    (select count(*) from raw.marketing_events m
                     where list_contains(k.ids, try_cast(m.customer_id as bigint))) as events,
                    (select count(*) from raw.web_sessions w where list_contains(k.ids, w.customer_id)) as sessions
                from keys k
            )
            (select customer_key, ids from activity where len(ids) > 1 and orders > 0
             order by tickets + surveys + events + sessions desc, customer_key limit 1)
            union all
            (select customer_key, ids from activity
             where len(ids) = 1 and orders > 0 and tickets > 0 and surveys > 0 and events > 0 and sessions > 0
             order by customer_key limit 2)""").fetchall()
        assert len(rows) == 3 and len(rows[0][1]) > 1, "the generated data must hold a person with several records"
        customer_ids = {customer_id for _, ids in rows for customer_id in ids}
        requested = [rows[0][1][-1], rows[1][0], rows[2][0]]
        id_list = sorted(customer_ids)
        order_ids = {
            r[0]
            for r in con.execute(
                "select order_id from raw.orders where list_contains(?, customer_id)", [id_list]
            ).fetchall()
        }
        contacts = set()
        for email, phone in con.execute(
            "select email, phone from raw.customers where list_contains(?, try_cast(trim(customer_id) as bigint))",
            [id_list],
        ).fetchall():
            contacts |= {value for value in (email and email.strip().lower(), phone and phone.strip()) if value}
        columns = "select * exclude (_extra, _partition_date, _source_file, _loaded_at)"
        redelivery = {
            "customers": con.sql(
                f"{columns} from raw.customers where list_contains($ids, try_cast(trim(customer_id) as bigint))",
                params={"ids": id_list},
            ).to_arrow_table(),
            "orders": con.sql(
                f"{columns} from raw.orders where list_contains($ids, customer_id)", params={"ids": id_list}
            ).to_arrow_table(),
            "tickets": con.sql(
                f"{columns} from raw.tickets where list_contains($ids, try_cast(customer_id as bigint))",
                params={"ids": id_list},
            ).to_arrow_table(),
        }
    return Victims(requested, customer_ids, order_ids, {c for c in contacts if len(c) >= 5}, redelivery)


def _landing_residue(settings: Settings, victims: Victims) -> list[str]:
    found = []
    ids = {str(c) for c in victims.customer_ids}
    for name, contract in CONTRACTS.items():
        for path in sorted((settings.landing_dir / name).glob("dt=*/*")):
            if contract.file_format == "parquet":
                table = pq.read_table(path)
                for column, wanted in (("customer_id", victims.customer_ids), ("order_id", victims.order_ids)):
                    if column in table.column_names and (column == "customer_id" or name != "products"):
                        hits = set(table[column].to_pylist()) & wanted
                        if hits:
                            found.append(f"{path}: {column} {len(hits)}")
                continue
            text = path.read_bytes().decode("utf-8", errors="replace")
            if any(contact in text.lower() or contact in text for contact in victims.contacts):
                found.append(f"{path}: contact details")
            records = (
                [
                    json.loads(line)
                    for line in text.splitlines()
                    if line.strip().startswith("{") and line.strip().endswith("}")
                ]
                if contract.file_format == "jsonl"
                else list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline="")))
            )
            if any(canonical_id(record.get("customer_id")) in ids for record in records):
                found.append(f"{path}: customer_id")
    return found


def _database_residue(
    path: Path, settings: Settings, victims: Victims, skip_schemas: tuple[str, ...] = ()
) -> list[str]:
    """Every table and view: id columns holding an erased id, any text column holding their contacts."""
    found = []
    with duckdb.connect(str(path), read_only=True) as con:
        hash_key_session(settings, DuckDBWarehouse(con))
        columns = con.execute("""
            select table_schema, table_name, column_name, data_type from information_schema.columns
            where table_schema not in ('information_schema', 'pg_catalog')""").fetchall()
        for schema, table, column, data_type in columns:
            if schema in skip_schemas:
                continue
            relation = f"{schema}.{table}"
            if column in ("customer_id", "customer_key", "order_id"):
                wanted = sorted(victims.order_ids if column == "order_id" else victims.customer_ids)
                hits = con.execute(
                    f'select count(*) from {relation} where try_cast(trim(cast("{column}" as varchar)) '
                    f"as bigint) in (select unnest(?))",
                    [wanted],
                ).fetchone()[0]
                if hits:
                    found.append(f"{relation}.{column}: {hits} row(s)")
            elif data_type == "VARCHAR":
                condition = " or ".join(f'contains(lower("{column}"), ?)' for _ in victims.contacts)
                hits = con.execute(
                    f"select count(*) from {relation} where {condition}", [c.lower() for c in victims.contacts]
                ).fetchone()[0]
                if hits:
                    found.append(f"{relation}.{column}: contact details in {hits} row(s)")
            if (schema, table, column) == ("audit", "rejected_rows", "record_key"):
                hits = con.execute(
                    "select count(*) from audit.rejected_rows where source = 'customers' and "
                    "try_cast(trim(record_key) as bigint) in (select unnest(?))",
                    [sorted(victims.customer_ids)],
                ).fetchone()[0]
                if hits:
                    found.append(f"audit.rejected_rows.record_key: {hits} row(s)")
    return found


def _redeliver(settings: Settings, victims: Victims, day: date) -> None:
    """The source systems deliver the erased customers again on ``day``: their master records (changed),
    their orders and their tickets, appended to that day's files."""
    folder = f"dt={day.isoformat()}"
    customers = settings.landing_dir / "customers" / folder / "customers.csv"
    with customers.open(newline="") as handle:
        header = next(csv.reader(handle))
    changed = victims.redelivery["customers"].select(header)
    changed = changed.set_column(
        header.index("updated_at"), "updated_at", pa.array([f"{day.isoformat()}T12:00:00"] * changed.num_rows)
    )
    rows = pa.BufferOutputStream()  # written as the source system writes: pyarrow's CSV, no header
    pacsv.write_csv(changed, rows, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    with customers.open("ab") as handle:
        handle.write(rows.getvalue().to_pybytes())
    orders = settings.landing_dir / "orders" / folder / "orders.parquet"
    existing = pq.read_table(orders)
    again = victims.redelivery["orders"].select(existing.column_names).cast(existing.schema)
    pq.write_table(pa.concat_tables([existing, again]), orders)
    tickets = settings.landing_dir / "tickets" / folder / "tickets.jsonl"
    with tickets.open("a") as handle:
        for record in victims.redelivery["tickets"].to_pylist():
            handle.write(json.dumps(record, default=str) + "\n")


def _suppressed_rows(settings: Settings) -> dict[str, int]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return dict(
            con.execute(
                "select source, sum(suppressed_rows)::bigint from audit.suppressed_rows group by all"
            ).fetchall()
        )


def test_erased_customers_leave_no_residue_and_stay_erased(daily_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The daily history after its first day (a copy): everything is delivered, everything up to the day
    before the last is loaded, built, scored with both champions and published; the last day comes later.

    About 2 minutes: the erasure through the CLI and again through the crm_erasure DAG (its closing
    build and publish marked successful), then a daily run and a full-refresh build that must keep
    the erased customers out."""
    day_before, end = daily_runs.days[-2], daily_runs.days[-1]
    home = tmp_path / "home"
    shutil.copytree(daily_runs.after_first_day, home)
    settings = daily_runs.settings(home, day_before)
    victims = _pick_victims(settings)
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as bi:
        assert (
            bi.execute(
                "select count(*) from scores.segments where customer_key in (select unnest(?))",
                [sorted(victims.customer_ids)],
            ).fetchone()[0]
            > 0
        )
    assert _landing_residue(settings, victims) and _database_residue(settings.warehouse_path, settings, victims)

    request = tmp_path / "erasure-request.txt"
    request.write_text("".join(f"{customer_id}\n" for customer_id in victims.requested))
    # A first erasure dies after rewriting the landing files, in the middle of a rewrite (its
    # temporary file left behind); the warehouse and the BI copy still hold the customers.
    record_suppression(settings, victims.requested)
    erase_landing(settings)
    crashed = next((settings.landing_dir / "orders").glob("dt=*")) / (".orders.parquet" + ERASING_SUFFIX)
    crashed.write_bytes(b"PAR1 half written")
    assert _database_residue(settings.bi_warehouse_path, settings, victims)
    env = daily_runs.env(settings)
    crm = str(Path(sys.executable).with_name("crm"))
    # Without the closing dbt build and publish: the daily run below does both (and it saves a build here).
    erased = subprocess.run(
        [crm, "erase", "--customer-ids", str(request), "--no-rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert erased.returncode == 0, erased.stderr[-3000:]
    report = json.loads(erased.stdout)
    assert report["removed"]["warehouse"]["raw.orders"] > 0 and report["removed"]["warehouse"]["scores.segments"] > 0
    assert not crashed.exists()
    # The Data Docs' failing-row samples name customers by id: the sites and their results are gone.
    assert report["removed"]["data_docs"]["files_removed"] > 0
    assert not settings.data_docs_dir.exists() and not data_docs.validations_dir(settings).exists()

    # Zero residue: landing files (also the last day's, not loaded yet), every table and view, the BI copy.
    assert _landing_residue(settings, victims) == []
    assert _database_residue(settings.warehouse_path, settings, victims) == []
    assert _database_residue(settings.bi_warehouse_path, settings, victims) == []
    # The same request again, through the crm_erasure DAG in real Airflow: it converges (nothing left
    # to remove). Its closing dbt build and publish are marked successful: they are the daily run's
    # tasks, and the daily run below builds and publishes and must bring nothing back.
    for name, value in env.items():
        if name.startswith("CRM_"):
            monkeypatch.setenv(name, value)
    local_airflow.migrate(settings)
    dag_log = tmp_path / "erasure-dag.log"
    params = {"customer_ids_file": str(request)}
    assert local_airflow.test_dag(settings, "crm_erasure", dag_log, params, "^(dbt_build|publish_marts)$") == 0, (
        dag_log.read_text()[-3000:]
    )
    rerun = json.loads(settings.erasure_audit_path.read_text().splitlines()[-1])["removed"]
    assert not any(rerun["landing"].values()) and rerun["warehouse"] == {}, rerun
    assert _database_residue(settings.warehouse_path, settings, victims) == []
    assert _database_residue(settings.bi_warehouse_path, settings, victims) == []

    # The audit log holds hashes, time and counts, never a raw id, email or phone.
    audit_lines = settings.erasure_audit_path.read_text().splitlines()
    entry = json.loads(audit_lines[0])
    assert sorted(entry["requested_customer_id_hashes"]) == sorted(settings.hash_pii(str(c)) for c in victims.requested)
    linked = set(entry["linked_customer_id_hashes"]) | set(entry["requested_customer_id_hashes"])
    assert linked == {settings.hash_pii(str(c)) for c in victims.customer_ids}
    audit_text = settings.erasure_audit_path.read_text().lower()
    assert not any(contact.lower() in audit_text for contact in victims.contacts)
    for hashes in (entry["requested_customer_id_hashes"], entry["linked_customer_id_hashes"]):
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
    assert not any(f'"{c}"' in audit_text for c in victims.customer_ids)

    # The last day delivers them again: a daily run and a full refresh keep them out of everything
    # but the restricted raw schema (dbt's reconciliation test counts them as suppressed).
    _redeliver(settings, victims, end)
    daily = replace(settings, as_of_date=end)
    pipeline.load(daily)
    pipeline.build_warehouse(daily)
    pipeline.publish(daily)
    suppressed = _suppressed_rows(settings)
    assert suppressed["customers"] >= len(victims.redelivery["customers"])
    assert suppressed["orders"] >= len(victims.redelivery["orders"]) and suppressed["tickets"] > 0
    assert _database_residue(settings.warehouse_path, settings, victims, skip_schemas=("raw",)) == []
    assert _database_residue(settings.bi_warehouse_path, settings, victims) == []
    pipeline.build_warehouse(replace(daily, full_refresh=True))
    assert _database_residue(settings.warehouse_path, settings, victims, skip_schemas=("raw",)) == []


def test_erasure_dag_takes_a_file_and_the_warehouse_pool_on_every_task():
    from airflow.dag_processing.dagbag import DagBag

    from crm.orchestration import WAREHOUSE_POOL

    bag = DagBag(dag_folder=str(Settings.from_env().dags_dir / "crm_erasure.py"))
    assert bag.import_errors == {}
    dag = bag.dags["crm_erasure"]
    assert dag.schedule is None and dag.max_active_runs == 1 and dag.doc_md
    assert "customer_ids_file" in dag.params
    for task in dag.tasks:
        assert task.pool == WAREHOUSE_POOL and task.retries == 2 and task.on_failure_callback, task.task_id
    order = [
        "record_suppression",
        "erase_landing_files",
        "erase_warehouse_rows",
        "republish_bi_copy",
        "write_erasure_audit",
        "dbt_build",
        "publish_marts",
    ]
    for before, after in zip(order, order[1:], strict=False):
        assert after in dag.get_task(before).get_flat_relative_ids(upstream=False), (before, after)


def test_an_id_never_seen_is_recorded_and_nothing_is_deleted_or_rebuilt(daily_runs, tmp_path: Path):
    """An erasure of a customer id the deliveries never held says so plainly: the request is recorded
    (a later delivery of the id is kept out), and the warehouse and the BI copy are left as they were
    (no republication, no rebuild). Asked again, it is a rerun and republishes."""
    home = tmp_path / "home"
    shutil.copytree(daily_runs.after_first_day, home)
    settings = daily_runs.settings(home, daily_runs.days[0])
    request = tmp_path / "erasure-request.txt"
    request.write_text("987654321\n")
    published = settings.bi_warehouse_path.stat()
    built = (settings.dbt_artifacts_dir / "target" / "run_results.json").stat().st_mtime_ns
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "erase", "--customer-ids", str(request)],
        env=daily_runs.env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"crm erase: {NOTHING_FOUND}" in completed.stdout
    result = json.loads(completed.stdout[: completed.stdout.rindex("}") + 1])
    assert result["suppressed"]["customer_id"] == 1 and result["removed"]["bi"] == {"tables_republished": 0}
    assert result["removed"]["data_docs"] == {"files_removed": 0}
    assert (settings.bi_warehouse_path.stat().st_ino, settings.bi_warehouse_path.stat().st_mtime_ns) == (
        published.st_ino,
        published.st_mtime_ns,
    )
    assert (settings.dbt_artifacts_dir / "target" / "run_results.json").stat().st_mtime_ns == built
    assert len(settings.erasure_audit_path.read_text().splitlines()) == 1
    # The same request again is a rerun, as after an interrupted erasure: it republishes whatever it finds.
    again = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "erase", "--customer-ids", str(request), "--no-rebuild"],
        env=daily_runs.env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and NOTHING_FOUND not in again.stdout, again.stderr[-3000:]
    assert json.loads(again.stdout)["removed"]["bi"]["tables_republished"] > 0
