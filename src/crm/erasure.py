"""Right to be forgotten: remove customers' data everywhere the platform keeps it.

``crm erase --customer-ids FILE`` (and the ``crm_erasure`` DAG) run these steps; each is idempotent,
so a crashed erasure converges when it is run again:

1. ``record_suppression``: resolve each requested CRM customer id to its customer (identity
   resolution links several customer ids to one person) and write the keyed hashes
   (``Settings.hash_pii``) of all those ids, their order ids and their email addresses and phone
   numbers to the suppression list ``raw._erased_ids``. From here on the steps find the records to
   remove by hashing what they read and looking it up in that list, so a rerun after a crash still
   finds everything, even once the records that linked the ids are gone.
2. ``erase_landing``: every landing partition that holds such records is rewritten without them
   (write a new file, then rename it over the old one: never a half-written delivery).
3. ``erase_warehouse``: in one transaction, the rows in raw (with the load log's counts updated),
   the quarantine, staging tables, the SCD2 snapshot, the marts and the score tables.
4. ``republish_bi``: the BI copy is replaced by one without them.
5. ``write_audit``: one JSON line in the erasure audit log with hashed ids, the time and the counts
   per place; never a raw id.

Later deliveries of an erased customer are suppressed in dbt staging (macros/erasure.sql), which
reads the same list; ``audit.suppressed_rows`` counts them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crm import storage
from crm.contact_rules import EMAIL_IN_TEXT, PHONE_IN_TEXT
from crm.contracts import CONTRACTS, SourceContract
from crm.landing import (
    ERASED_IDS_TABLE,
    LOAD_LOG_TABLE,
    PARTITION_PREFIX,
    REJECTED_ROWS_TABLE,
    partition_files,
    record_rewritten_files,
)
from crm.settings import Settings, hmac_pads
from crm.warehouse import PUBLISHED_SCHEMA_PREFIX, Warehouse, open_warehouse, warehouse_exists

log = logging.getLogger(__name__)

CUSTOMER_ID, ORDER_ID, EMAIL, PHONE = "customer_id", "order_id", "email", "phone"
# The sources whose records belong to a customer: directly by customer_id, or (order lines) by order_id.
CUSTOMER_SOURCES = tuple(name for name, c in CONTRACTS.items() if CUSTOMER_ID in c.column_names)
ORDER_SOURCES = tuple(
    name for name, c in CONTRACTS.items() if ORDER_ID in c.column_names and CUSTOMER_ID not in c.column_names
)
ERASING_SUFFIX = ".erasing"
# The identity resolution view of the dbt project (staging schema).
IDENTITY_VIEW = "staging.int_customer_identity"

_INTEGER = re.compile(r"[+-]?\d+")
_EMAIL = re.compile(EMAIL_IN_TEXT)
_PHONE = re.compile(PHONE_IN_TEXT)
_JSON_CUSTOMER_ID = re.compile(r'"customer_id"\s*:\s*"?\s*([+-]?\d+)')


class ErasureError(ValueError):
    """The erasure request cannot be carried out; the message names the file or place and the problem."""


def read_customer_ids(path: Path) -> list[int]:
    """The CRM customer ids of an erasure request: one per line; blank lines and # comments are skipped.

    A bad line is reported by its number only: a mistaken line may hold personal data (an email
    pasted instead of an id), which must not reach a log.
    """
    if not path.is_file():
        raise ErasureError(f"{path}: customer id file does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ErasureError(f"{path}: customer id file is not UTF-8 text") from None
    ids: dict[int, None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if not value.isdigit():
            raise ErasureError(
                f"{path}, line {number}: not a customer id (expected the CRM's customer_id, digits only, one per line)"
            )
        ids[int(value)] = None
    if not ids:
        raise ErasureError(f"{path}: customer id file is empty (expected one customer_id per line)")
    return list(ids)


def canonical_id(value: object) -> str | None:
    """An id in the one text form that is hashed, in Python and in dbt (macros/erasure.sql: the
    integer as text): ' 0042 ' and 42 are the same id. None when the value is not an integer."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    text = str(value).strip()
    return str(int(text)) if _INTEGER.fullmatch(text) else None


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    return re.sub(r"[^0-9+]", "", value)


@dataclass
class Suppression:
    """The suppression list in memory: which ids and contact details are erased, found by their hash."""

    settings: Settings
    hashes: dict[str, set[str]] = field(
        default_factory=lambda: {CUSTOMER_ID: set(), ORDER_ID: set(), EMAIL: set(), PHONE: set()}
    )
    _seen: dict[tuple[str, str], bool] = field(default_factory=dict)

    @classmethod
    def read(cls, settings: Settings, warehouse: Warehouse) -> Suppression:
        suppression = cls(settings)
        for kind, id_hash in warehouse.rows(f"select id_kind, id_hash from {ERASED_IDS_TABLE}"):
            suppression.hashes.setdefault(kind, set()).add(id_hash)
        return suppression

    def __bool__(self) -> bool:
        return any(self.hashes.values())

    def _is(self, kind: str, text: str | None) -> bool:
        if not text or not self.hashes[kind]:
            return False
        key = (kind, text)
        if key not in self._seen:
            self._seen[key] = self.settings.hash_pii(text) in self.hashes[kind]
        return self._seen[key]

    def customer(self, value: object) -> bool:
        return self._is(CUSTOMER_ID, canonical_id(value))

    def order(self, value: object) -> bool:
        return self._is(ORDER_ID, canonical_id(value))

    def mentions_contact(self, text: str) -> bool:
        """Whether free text holds an erased email address or phone number."""
        if "@" in text and any(self._is(EMAIL, normalise_email(m)) for m in _EMAIL.findall(text)):
            return True
        return any(self._is(PHONE, normalise_phone(m)) for m in _PHONE.findall(text))

    def record(self, source: str, values: dict[str, object]) -> bool:
        """Whether a parsed record of ``source`` belongs to an erased customer."""
        if CUSTOMER_ID in values and self.customer(values[CUSTOMER_ID]):
            return True
        if source in ("orders", *ORDER_SOURCES) and ORDER_ID in values and self.order(values[ORDER_ID]):
            return True
        return any(isinstance(v, str) and self.mentions_contact(v) for v in values.values())

    def line(self, contract: SourceContract, text: str) -> bool:
        """Whether an unparseable line of ``contract``'s source belongs to an erased customer."""
        if self.mentions_contact(text):
            return True
        if contract.file_format in ("jsonl", "parquet"):  # Parquet rows are kept as JSON objects
            return any(self.customer(m) for m in _JSON_CUSTOMER_ID.findall(text))
        if contract.file_format == "csv" and CUSTOMER_ID in contract.column_names:
            fields = next(csv.reader([text]), [])
            position = contract.column_names.index(CUSTOMER_ID)
            return len(fields) > position and self.customer(fields[position])
        return False


def hash_key_session(settings: Settings, warehouse: Warehouse) -> Warehouse:
    """Give a warehouse session the PII hash key (as HMAC pads, like dbt's connections), so that it can
    read the staging views, which hash ids to suppress erased customers."""
    warehouse.set_pii_pads(*hmac_pads(settings.pii_hash_key()))
    return warehouse


def ensure_suppression_list(warehouse: Warehouse) -> None:
    warehouse.ensure_erased_ids_table()


def _in(values: Iterable[object]) -> tuple[str, list[object]]:
    """A SQL list of placeholders for ``values`` and the values (``(null)`` for none: matches nothing)."""
    values = list(values)
    return ("(" + ", ".join("?" for _ in values) + ")" if values else "(null)"), values


# 1. The suppression list -------------------------------------------------------------------------


def requested_before(settings: Settings, customer_ids: Iterable[int]) -> bool:
    """Whether an earlier erasure recorded any of these requested customer ids (a rerun)."""
    if not warehouse_exists(settings):
        return False
    with open_warehouse(settings, read_only=True) as warehouse:
        if not warehouse.table_exists(ERASED_IDS_TABLE):
            return False
        listed, hashes = _in(sorted(settings.hash_pii(str(int(customer_id))) for customer_id in customer_ids))
        return warehouse.row(f"select count(*) from {ERASED_IDS_TABLE} where request_hash in {listed}", hashes)[0] > 0


def record_suppression(settings: Settings, customer_ids: Iterable[int]) -> dict[str, object]:
    """Resolve the requested customers and add the hashes of everything that identifies them to the
    suppression list. Returns the hashed requested and linked ids and how many ids of each kind."""
    requested = {str(int(customer_id)) for customer_id in customer_ids}
    with open_warehouse(settings) as warehouse:
        ensure_suppression_list(warehouse)
        hash_key_session(settings, warehouse)
        customers = requested | _linked_customer_ids(warehouse, requested)
        listed, ids = _in(sorted(int(c) for c in customers))
        emails, phones = set(), set()
        raw_customers = CONTRACTS["customers"].raw_table
        # Nothing loaded yet: only the landing files hold them.
        loaded = warehouse.table_exists(raw_customers)
        customer_id = warehouse.try_bigint("trim(customer_id)")
        found = f"select email, phone from {raw_customers} where {customer_id} in {listed}"
        for email, phone in warehouse.rows(found, ids) if loaded else []:
            if email and _EMAIL.fullmatch(normalise_email(email)):
                emails.add(normalise_email(email))
            if phone and len(normalise_phone(phone)) >= 7:
                phones.add(normalise_phone(phone))
        their_orders = f"select order_id from raw.orders where customer_id in {listed}"
        orders = {
            canonical_id(row[0]) for row in (warehouse.rows(their_orders, ids) if loaded else [])
        } | _landing_order_ids(settings, customers)
        # Each entry remembers (as a hash) which requested id it was found for: a rerun after a crash
        # gets back what an earlier attempt resolved, even once staging hides the records that linked it.
        anchor = {c: c if c in requested else _request_of(c, requested, warehouse) for c in customers}
        entries = [(CUSTOMER_ID, value, anchor[value]) for value in sorted(customers)]
        first_request = sorted(requested)[0]
        entries += [
            (kind, value, first_request)
            for kind, values in ((ORDER_ID, {o for o in orders if o}), (EMAIL, emails), (PHONE, phones))
            for value in sorted(values)
        ]
        rows = [(kind, settings.hash_pii(value), settings.hash_pii(request)) for kind, value, request in entries]
        request_hashes = sorted(settings.hash_pii(c) for c in requested)
        with warehouse.transaction():
            # The ids not listed yet (a rerun adds nothing): one statement, the same on every engine.
            warehouse.execute(
                f"""
                insert into {ERASED_IDS_TABLE}
                select found.id_kind, found.id_hash, cast(current_timestamp as timestamp), found.request_hash
                from (values {", ".join("(?, ?, ?)" for _ in rows)}) as found (id_kind, id_hash, request_hash)
                where not exists (
                    select 1 from {ERASED_IDS_TABLE} as listed
                    where listed.id_kind = found.id_kind and listed.id_hash = found.id_hash
                )""",
                [value for row in rows for value in row],
            )
            listed_requests, request_params = _in(request_hashes)
            recorded = warehouse.rows(
                f"select id_kind, id_hash from {ERASED_IDS_TABLE} where request_hash in {listed_requests}",
                request_params,
            )
    hashes: dict[str, set[str]] = {}
    for kind, id_hash in [(kind, id_hash) for kind, id_hash, _ in rows] + recorded:
        hashes.setdefault(kind, set()).add(id_hash)
    counts = {kind: len(hashes.get(kind, ())) for kind in (CUSTOMER_ID, ORDER_ID, EMAIL, PHONE)}
    log.info(
        "erasure: %d requested customer id(s) resolve to %d customer id(s); suppressed %s",
        len(requested),
        counts[CUSTOMER_ID],
        counts,
    )
    return {
        "requested": request_hashes,
        "linked": sorted(hashes.get(CUSTOMER_ID, set()) - set(request_hashes)),
        "suppressed": counts,
    }


def _request_of(customer_id: str, requested: set[str], warehouse: Warehouse) -> str:
    """The requested id that identity resolution links ``customer_id`` to."""
    listed, ids = _in(sorted(int(c) for c in requested))
    row = warehouse.row(
        f"""
        select min(cast(requested.customer_id as {warehouse.sql_type("text")})) from {IDENTITY_VIEW} as linked
        join {IDENTITY_VIEW} as requested on requested.customer_key = linked.customer_key
        where linked.customer_id = ? and requested.customer_id in {listed}""",
        [int(customer_id), *ids],
    )
    return row[0] if row and row[0] else sorted(requested)[0]


def _linked_customer_ids(warehouse: Warehouse, requested: set[str]) -> set[str]:
    """The other CRM ids of the same persons, by the warehouse's identity resolution (when built)."""
    if not warehouse.table_exists(IDENTITY_VIEW):
        return set()
    listed, ids = _in(sorted(int(c) for c in requested))
    rows = warehouse.rows(
        f"""
        select cast(customer_id as {warehouse.sql_type("text")}) from {IDENTITY_VIEW}
        where customer_key in (select customer_key from {IDENTITY_VIEW} where customer_id in {listed})""",
        ids,
    )
    return {row[0] for row in rows}


def _landing_order_ids(settings: Settings, customers: set[str]) -> set[str]:
    """Order ids of these customers in every delivered orders file (also the ones not loaded yet)."""
    contract = CONTRACTS["orders"]
    wanted = pa.array(sorted(int(c) for c in customers), type=pa.int64())
    found: set[str] = set()
    for path in _partition_files(settings, contract):
        try:
            table = pq.read_table(path, columns=[ORDER_ID, CUSTOMER_ID])
        except (OSError, pa.ArrowException, KeyError) as error:
            raise ErasureError(
                f"{path}: source 'orders': cannot be read to find the erased customers' orders: {error}"
            ) from None
        customer_ids = pc.cast(table[CUSTOMER_ID], pa.int64(), safe=False)
        matches = table.filter(pc.is_in(customer_ids, value_set=wanted))
        found |= {canonical_id(v) for v in matches[ORDER_ID].to_pylist() if canonical_id(v)}
    return found


# 2. Landing files --------------------------------------------------------------------------------


def _partition_files(settings: Settings, contract: SourceContract) -> list[Path]:
    """Every file a load of the source would read (part files too)."""
    source_dir = settings.landing_dir / contract.name
    if not source_dir.is_dir():
        return []
    root = settings.landing_dir.resolve()
    return [
        path
        for folder in sorted(source_dir.iterdir())
        if folder.is_dir() and folder.name.startswith(PARTITION_PREFIX)
        for path in partition_files(contract, folder, root, refuse_foreign=False)
    ]


def _erasing_path(path: Path) -> Path:
    """Where a rewrite is written before it replaces ``path``: a hidden name, which loads skip."""
    return path.with_name(f".{path.name}{ERASING_SUFFIX}")


def erase_landing(settings: Settings) -> dict[str, int]:
    """Rewrite every landing partition that holds records of erased customers without them.

    Returns the records removed per source. A file is replaced by rename, so a reader or a crash
    sees the old file or the new one, never a mix; a leftover temporary file of a crash is removed.
    """
    with open_warehouse(settings, read_only=True) as warehouse:
        suppression = Suppression.read(settings, warehouse)
    removed: dict[str, int] = {}
    rewritten: list[Path] = []
    if not suppression:
        return removed
    if settings.landing_url:
        # The store is the landing: the worker's mirror must hold every delivered file first.
        storage.mirror(settings.landing_url, settings.landing_dir)
    rewriters: dict[str, Callable[[SourceContract, Path, Suppression], tuple[int, bytes] | None]] = {
        "csv": _rewrite_csv,
        "jsonl": _rewrite_jsonl,
        "parquet": _rewrite_parquet,
    }
    for name in (*CUSTOMER_SOURCES, *ORDER_SOURCES):
        contract = CONTRACTS[name]
        total = 0
        for path in _partition_files(settings, contract):
            _erasing_path(path).unlink(missing_ok=True)
            result = rewriters[contract.file_format](contract, path, suppression)
            if result is not None:
                count, content = result
                if settings.landing_url:
                    # The store's file first: a crash before the local rename leaves a mirror that the
                    # next erasure refreshes from the rewritten file, never an erased mirror over a
                    # store that still holds the records.
                    storage.write(settings.landing_url, path.relative_to(settings.landing_dir).as_posix(), content)
                _replace_atomically(path, content)
                rewritten.append(path)
                total += count
        removed[name] = total
    if rewritten and warehouse_exists(settings):
        # A crash before this line makes the next load take the rewritten files as a corrected
        # re-delivery: more work, the same rows.
        with open_warehouse(settings) as warehouse:
            record_rewritten_files(warehouse, rewritten)
    log.info("erasure: landing records removed per source: %s", removed)
    return removed


def _replace_atomically(path: Path, content: bytes) -> None:
    temporary = _erasing_path(path)
    with temporary.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _TrackedLines:
    """Lines handed to csv.reader, remembered, so a kept record is written back byte for byte."""

    def __init__(self, text: str) -> None:
        self._lines = io.StringIO(text, newline="")
        self.taken: list[str] = []

    def __iter__(self) -> _TrackedLines:
        return self

    def __next__(self) -> str:
        line = self._lines.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line

    def rest(self) -> str:
        return self._lines.read()

    def pop(self) -> str:
        text, self.taken = "".join(self.taken), []
        return text


def _rewrite_csv(contract: SourceContract, path: Path, suppression: Suppression) -> tuple[int, bytes] | None:
    raw = path.read_bytes()
    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    # surrogateescape: bytes that are not UTF-8 go back out unchanged (the load quarantines them).
    text = raw[len(bom) :].decode("utf-8", errors="surrogateescape")
    lines = _TrackedLines(text)
    reader = csv.reader(lines)
    kept, removed = [], 0
    csv.field_size_limit(sys.maxsize)
    try:
        header = next(reader, None)
        if header is None:
            return None
        kept.append(lines.pop())
        names = [name.strip().lstrip("\ufeff") for name in header]
        for record in reader:
            chunk = lines.pop()
            values = dict(zip(names, record, strict=False))
            if len(record) != len(names):  # a malformed line is judged as the load quarantines it
                erased = suppression.line(contract, chunk)
            else:
                erased = suppression.record(contract.name, values)
            if erased:
                removed += 1
            else:
                kept.append(chunk)
    except csv.Error:
        # From what csv cannot parse on (the load quarantines it), judge the rest line by line.
        for line in io.StringIO(lines.pop() + lines.rest(), newline=""):
            if suppression.line(contract, line):
                removed += 1
            else:
                kept.append(line)
    if not removed:
        return None
    return removed, bom + "".join(kept).encode("utf-8", errors="surrogateescape")


def _rewrite_jsonl(contract: SourceContract, path: Path, suppression: Suppression) -> tuple[int, bytes] | None:
    kept, removed = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        text = line.decode("utf-8", errors="surrogateescape")
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        erased = (
            suppression.record(contract.name, record)
            if isinstance(record, dict)
            else bool(text.strip()) and suppression.line(contract, text)
        )
        if erased:
            removed += 1
        else:
            kept.append(line)
    return (removed, b"".join(kept)) if removed else None


def _rewrite_parquet(contract: SourceContract, path: Path, suppression: Suppression) -> tuple[int, bytes] | None:
    table = pq.read_table(path)
    keep = None
    for column, matches in ((CUSTOMER_ID, suppression.customer), (ORDER_ID, suppression.order)):
        if column not in table.column_names or (column == ORDER_ID and contract.name not in ("orders", *ORDER_SOURCES)):
            continue
        distinct = pc.unique(table[column]).to_pylist()
        erased = [value for value in distinct if value is not None and matches(value)]
        if erased:
            hit = pc.fill_null(pc.is_in(table[column], value_set=pa.array(erased, type=table[column].type)), False)
            keep = pc.invert(hit) if keep is None else pc.and_(keep, pc.invert(hit))
    if keep is None:
        return None
    filtered = table.filter(keep)
    sink = pa.BufferOutputStream()
    pq.write_table(filtered, sink)
    return table.num_rows - filtered.num_rows, sink.getvalue().to_pybytes()


# 3. The warehouse --------------------------------------------------------------------------------


def erase_warehouse(settings: Settings) -> dict[str, int]:
    """Delete the erased customers' rows from every table of the warehouse in one transaction.

    raw tables (and the quarantined lines, with the load log's counts brought in line), staging
    tables, the snapshot, the marts, the audit tables and the score tables: every table with a
    customer_id, customer_key or order_id column. Views need nothing: they read these tables.
    Returns the rows deleted per table (tables without any are left out).
    """
    if not warehouse_exists(settings):
        return {}
    deleted: dict[str, int] = {}
    with open_warehouse(settings) as warehouse:
        if not warehouse.table_exists(ERASED_IDS_TABLE):
            return deleted
        suppression = Suppression.read(settings, warehouse)
        if not suppression:
            return deleted
        tables = _id_tables(warehouse)
        customers, orders = _erased_ids_in(warehouse, tables, suppression)
        erased_customers, customer_ids = _in(sorted(customers))
        erased_orders, order_ids = _in(sorted(orders))
        with warehouse.transaction():
            for table, columns in tables.items():
                conditions, params = [], []
                for column in columns:
                    listed, ids = (erased_orders, order_ids) if column == ORDER_ID else (erased_customers, customer_ids)
                    conditions.append(f"{_canonical_sql(warehouse, column)} in {listed}")
                    params += ids
                if table == "audit.rejected_rows":
                    conditions += _rejected_rows_conditions(warehouse, erased_customers, erased_orders)
                    params += [*customer_ids, *order_ids, *order_ids]
                count = warehouse.delete_rows(table, " or ".join(conditions), params)
                if count:
                    deleted[table] = count
            count = _erase_rejected_lines(warehouse, suppression)
            if count:
                deleted[REJECTED_ROWS_TABLE] = count
            _recount_load_log(warehouse)
    log.info("erasure: warehouse rows deleted per table: %s", deleted)
    return deleted


def _canonical_sql(warehouse: Warehouse, column: str) -> str:
    return warehouse.try_bigint(f"trim(cast({column} as {warehouse.sql_type('text')}))")


def _rejected_rows_conditions(warehouse: Warehouse, erased_customers: str, erased_orders: str) -> list[str]:
    # The quarantine's record_key is the raw key: the customer id itself, the order id, or order-line.
    record_id = warehouse.try_bigint("trim(record_key)")
    line_order_id = warehouse.try_bigint("split_part(record_key, '-', 1)")
    return [
        f"(source = 'customers' and {record_id} in {erased_customers})",
        f"(source = 'orders' and {record_id} in {erased_orders})",
        f"(source = 'order_items' and {line_order_id} in {erased_orders})",
    ]


def _id_tables(warehouse: Warehouse) -> dict[str, list[str]]:
    """Every base table with a column that refers to a customer or an order, and those columns; not the
    published copies for BI (republish_bi replaces them)."""
    tables: dict[str, list[str]] = {}
    for table, column in warehouse.base_table_columns(skipped_schemas=PUBLISHED_SCHEMA_PREFIX):
        if column in (CUSTOMER_ID, "customer_key", ORDER_ID):
            tables.setdefault(table, []).append(column)
    if warehouse.table_exists("audit.rejected_rows"):
        tables.setdefault("audit.rejected_rows", [])
    return dict(sorted(tables.items()))


def _erased_ids_in(
    warehouse: Warehouse, tables: dict[str, list[str]], suppression: Suppression
) -> tuple[set[int], set[int]]:
    """The customer and order ids present in the warehouse whose hashes are on the suppression list,
    plus the orders of those customers."""
    customers: set[int] = set()
    orders: set[int] = set()
    for table, columns in tables.items():
        if not columns:
            continue
        # One query per table: each id column's distinct values, tagged with whether it holds orders.
        values = warehouse.rows(
            " union ".join(
                f"select {'1' if column == ORDER_ID else '0'} as is_order, {_canonical_sql(warehouse, column)} as id "
                f"from {table}"
                for column in columns
            )
        )
        for is_order, value in values:
            if value is not None and (suppression.order if is_order else suppression.customer)(value):
                (orders if is_order else customers).add(value)
    if customers:
        listed, ids = _in(sorted(customers))
        orders |= {
            row[0]
            for row in warehouse.rows(f"select distinct order_id from raw.orders where customer_id in {listed}", ids)
            if row[0] is not None
        }
    return customers, orders


def _erase_rejected_lines(warehouse: Warehouse, suppression: Suppression) -> int:
    rows = warehouse.rows(
        f"select source, source_file, delivery, line_number, raw_line from {REJECTED_ROWS_TABLE} "
        f"where raw_line is not null"
    )
    doomed = [
        (source, source_file, delivery, line_number, line)
        for source, source_file, delivery, line_number, line in rows
        if source in CONTRACTS and suppression.line(CONTRACTS[source], line)
    ]
    if doomed:
        line = (
            "(source = ? and source_file = ? and delivery = ? and line_number is not distinct from ? and raw_line = ?)"
        )
        warehouse.delete_rows(
            REJECTED_ROWS_TABLE, " or ".join(line for _ in doomed), [v for row in doomed for v in row]
        )
    return len(doomed)


def _recount_load_log(warehouse: Warehouse) -> None:
    """The load log's counts per partition equal the rows raw and the quarantine hold for its file: the
    log is written again (one query, the same on every engine: Spark's Parquet cannot update rows)."""
    sources = (*CUSTOMER_SOURCES, *ORDER_SOURCES)
    raw_rows = " ".join(
        f"when '{name}' then (select count(*) from {CONTRACTS[name].raw_table} as r "
        "where r._source_file = loads.file and r._delivery = loads.delivery)"
        for name in sources
    )
    # Only each partition's latest delivery: the rows of earlier deliveries left raw when a correction
    # replaced them, and their counts stay.
    recounted = (
        f"loads.source in ({', '.join(repr(name) for name in sources)}) and loads.delivery = "
        f"(select max(delivery) from {LOAD_LOG_TABLE} as l "
        "where l.source = loads.source and l.partition_date = loads.partition_date)"
    )
    counts = {
        "row_count": f"case loads.source {raw_rows} end",
        "rejected_count": (
            f"(select count(*) from {REJECTED_ROWS_TABLE} as q "
            "where q.source_file = loads.file and q.delivery = loads.delivery)"
        ),
    }
    columns = ", ".join(
        f"case when {recounted} then {counts[column]} else loads.{column} end as {column}"
        if column in counts
        else f"loads.{column}"
        for column in warehouse.columns(LOAD_LOG_TABLE)
    )
    warehouse.rewrite_table(LOAD_LOG_TABLE, f"select {columns} from {LOAD_LOG_TABLE} as loads")


# 4. The BI copy, 5. the audit log ----------------------------------------------------------------


def republish_bi(settings: Settings) -> dict[str, int]:
    """Replace the BI copy (when one exists) with the published tables as they are now, written into an
    empty file (no partitions): a copy of the previous one would keep the erased rows in its free
    blocks."""
    from crm.pipeline import PUBLISHED_TABLES
    from crm.warehouse import bi_published, publish_for_bi

    if not bi_published(settings):
        return {}
    # Without partitions: every table is written anew (on PostgreSQL the schemas are always new).
    return publish_for_bi(settings, PUBLISHED_TABLES)


def erase_data_docs(settings: Settings) -> int:
    """Remove the Data Docs sites and the validation results kept for them; return how many files went.
    Their samples of failing rows name customers by id, and a page is no record worth keeping an
    erased customer for: the gates' outcomes stay, as counts, in monitoring.quality_gates, and the
    next gate step starts its run's site again. (An object-store copy, CRM_DATA_DOCS_URL, is the
    store's to expire.)"""
    from crm import data_docs

    removed = 0
    for folder in (settings.data_docs_dir, data_docs.validations_dir(settings)):
        if folder.is_dir():
            removed += sum(1 for path in folder.rglob("*") if path.is_file())
            shutil.rmtree(folder)
    log.info("erasure: %d Data Docs files removed", removed)
    return removed


def write_audit(settings: Settings, suppression: dict[str, object], removed: dict[str, dict[str, int]]) -> Path:
    """Append one erasure to the audit log: hashed ids, time and counts per place; never a raw id."""
    entry = {
        "erased_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requested_customer_id_hashes": suppression["requested"],
        "linked_customer_id_hashes": suppression["linked"],
        "suppressed_ids": suppression["suppressed"],
        "removed": removed,
    }
    path = settings.erasure_audit_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


NOTHING_FOUND = (
    "no record of these customers was found in the landing files or the warehouse: nothing was deleted, "
    "republished or rebuilt; their ids stay on the suppression list, so a later delivery of them is kept out"
)


def erase(settings: Settings, customer_ids_file: Path, rebuild: bool = True) -> dict[str, object]:
    """The whole erasure (``crm erase``); with ``rebuild``, then a dbt build and publish, so that the
    aggregates (campaign results, RFM bounds, consolidation rates) no longer count the erased. Where
    no record of them was found anywhere, nothing is republished or rebuilt and the result's note says
    so (the request stays recorded: a later delivery of them is kept out)."""
    ids = read_customer_ids(customer_ids_file)
    rerun = requested_before(settings, ids)
    suppression = record_suppression(settings, ids)
    removed = {"landing": erase_landing(settings), "warehouse": erase_warehouse(settings)}
    # Nothing deleted by a first request: the BI copy and the marts hold nothing of them either. A
    # rerun may find nothing left to delete where an interrupted attempt stopped before republishing.
    never_seen = not rerun and not sum(removed["landing"].values()) + sum(removed["warehouse"].values())
    removed["bi"] = {"tables_republished": 0 if never_seen else len(republish_bi(settings))}
    removed["data_docs"] = {"files_removed": 0 if never_seen else erase_data_docs(settings)}
    audit = write_audit(settings, suppression, removed)
    result = {"customers": len(ids), "audit_log": str(audit), **suppression, "removed": removed}
    if never_seen:
        result["note"] = NOTHING_FOUND
        log.info("erasure: %s", NOTHING_FOUND)
        return result
    if rebuild and warehouse_exists(settings):
        from crm import pipeline
        from crm.warehouse import bi_published

        pipeline.build_warehouse(settings)
        if bi_published(settings):
            pipeline.publish(settings)
    return result
