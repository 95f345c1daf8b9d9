"""The benchmark's two references for the feature stage, computed straight from the landing files
for one as-of date: the same per-customer aggregates as ``marts.customer_features`` (orders with
each order's latest delivered version, tickets, surveys, email events, web sessions).

- ``duckdb_floor``: DuckDB alone, one query: the irreducible cost of scanning and aggregating.
  No typing, quarantine, identity resolution, currency conversion or point-in-time versioning of
  customers, which the warehouse does and the floor leaves out.
- ``pandas_reference``: the same aggregates as a notebook user would write them in pandas.

Both skip the records they cannot parse (the generator delivers some) and return the number of
customers with features; the benchmark times them.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ORDERS, TICKETS, SURVEYS = "orders/*/*.parquet", "tickets/*/*.jsonl", "surveys/*/*.csv"
EVENTS, SESSIONS = "marketing_events/*/*.jsonl", "web_sessions/*/*.parquet"


def _glob(landing: Path, pattern: str) -> str:
    return str(landing / pattern)


def duckdb_floor(landing: Path, as_of: date) -> int:
    """The aggregates in one DuckDB query over the landing files; returns the number of customers."""
    end = as_of + timedelta(days=1)  # timestamps before the end of the as-of day
    sql = f"""
    with
    orders as (
        select customer_id, order_id, arg_max(status, updated_at) as status, arg_max(amount, updated_at) as amount,
               min(ordered_at) as ordered_at
        from read_parquet('{_glob(landing, ORDERS)}')
        where updated_at < $end and ordered_at < $end
        group by customer_id, order_id
    ),
    order_features as (
        select customer_id,
               count(*) as frequency,
               count(*) filter (where ordered_at >= $end - interval 90 day) as orders_last_90d,
               count(*) filter (where ordered_at >= $end - interval 180 day
                                  and ordered_at < $end - interval 90 day) as orders_prev_90d,
               count(*) filter (where status = 'cancelled') as cancelled_orders,
               count(*) filter (where status = 'returned') as returned_orders,
               sum(amount) filter (where status = 'completed') as monetary,
               date_diff('day', max(ordered_at), $end) as recency_days,
               date_diff('day', min(ordered_at), $end) as days_since_first_order
        from orders group by customer_id
    ),
    ticket_features as (
        select customer_id,
               count(*) filter (where created_at >= $end - interval 90 day) as tickets_last_90d,
               count(*) filter (where resolved_at is null or resolved_at >= $end) as open_tickets,
               avg(date_diff('hour', created_at, resolved_at)) filter (where resolved_at < $end)
                   as avg_hours_to_resolve,
               avg(csat) as avg_ticket_csat
        from read_json_auto('{_glob(landing, TICKETS)}', ignore_errors=true)
        where created_at < $end group by customer_id
    ),
    survey_features as (
        select customer_id, count(*) as survey_responses, avg(nps) as avg_nps, avg(csat) as avg_csat,
               arg_max(nps, responded_at) as last_nps, arg_max(csat, responded_at) as last_csat
        from read_csv_auto('{_glob(landing, SURVEYS)}', ignore_errors=true)
        where responded_at < $end group by customer_id
    ),
    email_features as (
        select customer_id,
               count(*) filter (where event_type = 'send') as emails_sent_last_90d,
               count(*) filter (where event_type = 'open') as emails_opened_last_90d,
               count(*) filter (where event_type = 'click') as emails_clicked_last_90d,
               bool_or(event_type = 'unsubscribe') as has_unsubscribed
        from read_json_auto('{_glob(landing, EVENTS)}', ignore_errors=true)
        where event_at < $end and (event_at >= $end - interval 90 day or event_type = 'unsubscribe')
        group by customer_id
    ),
    session_features as (
        select customer_id,
               count(*) filter (where started_at >= $end - interval 30 day) as sessions_last_30d,
               count(*) as sessions_last_90d, avg(pages_viewed) as pages_per_session_last_90d
        from read_parquet('{_glob(landing, SESSIONS)}')
        where started_at < $end and started_at >= $end - interval 90 day group by customer_id
    )
    select count(*) from order_features
    full join ticket_features using (customer_id)
    full join survey_features using (customer_id)
    full join email_features using (customer_id)
    full join session_features using (customer_id)
    """
    with duckdb.connect() as con:
        return con.execute(sql, {"end": pd.Timestamp(end).to_pydatetime()}).fetchone()[0]


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _read_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(io.StringIO("".join(line for line in path.open() if _parses(line))), lines=True)
    return pd.read_csv(path, on_bad_lines="skip")


def _read(landing: Path, pattern: str, columns: list[str], keep=None) -> pd.DataFrame:
    """Every file of a source, only ``columns``, and only the rows ``keep`` accepts, file by file
    (as a careful notebook would, to fit in memory)."""
    frames = []
    for path in sorted(landing.glob(pattern)):
        frame = _read_file(path).reindex(columns=columns)
        frames.append(frame[keep(frame)] if keep is not None else frame)
    return pd.concat(frames, ignore_index=True)


def pandas_reference(landing: Path, as_of: date) -> int:
    """The same aggregates in pandas, file by file as a notebook would read them; returns the number of customers."""
    end = pd.Timestamp(as_of + timedelta(days=1))
    d90, d180, d30 = end - pd.Timedelta(days=90), end - pd.Timedelta(days=180), end - pd.Timedelta(days=30)

    orders = _read(
        landing,
        ORDERS,
        ["customer_id", "order_id", "status", "amount", "ordered_at", "updated_at"],
        lambda f: (f.updated_at < end) & (f.ordered_at < end),
    )
    latest = orders.sort_values("updated_at").groupby(["customer_id", "order_id"], as_index=False).last()
    by_customer = latest.groupby("customer_id")
    order_features = pd.DataFrame(
        {
            "frequency": by_customer.size(),
            "orders_last_90d": latest[latest.ordered_at >= d90].groupby("customer_id").size(),
            "orders_prev_90d": latest[(latest.ordered_at >= d180) & (latest.ordered_at < d90)]
            .groupby("customer_id")
            .size(),
            "cancelled_orders": latest[latest.status == "cancelled"].groupby("customer_id").size(),
            "returned_orders": latest[latest.status == "returned"].groupby("customer_id").size(),
            "monetary": latest[latest.status == "completed"].groupby("customer_id").amount.sum(),
            "recency_days": (end - by_customer.ordered_at.max()).dt.days,
            "days_since_first_order": (end - by_customer.ordered_at.min()).dt.days,
        }
    )

    tickets = _read(landing, TICKETS, ["customer_id", "created_at", "resolved_at", "csat"])
    tickets["created_at"] = pd.to_datetime(tickets.created_at, errors="coerce")
    tickets["resolved_at"] = pd.to_datetime(tickets.resolved_at, errors="coerce")
    tickets = tickets[tickets.created_at < end]
    resolved = tickets[tickets.resolved_at < end]
    ticket_features = pd.DataFrame(
        {
            "tickets_last_90d": tickets[tickets.created_at >= d90].groupby("customer_id").size(),
            "open_tickets": tickets[tickets.resolved_at.isna() | (tickets.resolved_at >= end)]
            .groupby("customer_id")
            .size(),
            "avg_hours_to_resolve": ((resolved.resolved_at - resolved.created_at).dt.total_seconds() / 3600)
            .groupby(resolved.customer_id)
            .mean(),
            "avg_ticket_csat": tickets.groupby("customer_id").csat.mean(),
        }
    )

    surveys = _read(landing, SURVEYS, ["customer_id", "responded_at", "nps", "csat"])
    surveys["responded_at"] = pd.to_datetime(surveys.responded_at, errors="coerce")
    surveys["nps"], surveys["csat"] = (
        pd.to_numeric(surveys.nps, errors="coerce"),
        pd.to_numeric(surveys.csat, errors="coerce"),
    )
    surveys = surveys[surveys.responded_at < end].sort_values("responded_at")
    by_respondent = surveys.groupby("customer_id")
    survey_features = pd.DataFrame(
        {
            "survey_responses": by_respondent.size(),
            "avg_nps": by_respondent.nps.mean(),
            "avg_csat": by_respondent.csat.mean(),
            "last_nps": by_respondent.nps.last(),
            "last_csat": by_respondent.csat.last(),
        }
    )

    def recent_or_unsubscribe(frame: pd.DataFrame) -> pd.Series:
        at = pd.to_datetime(frame.event_at, errors="coerce")
        return (at < end) & ((at >= d90) | (frame.event_type == "unsubscribe"))

    events = _read(landing, EVENTS, ["customer_id", "event_type", "event_at"], recent_or_unsubscribe)
    counts = pd.crosstab(events.customer_id, events.event_type)
    email_features = pd.DataFrame(
        {
            f"emails_{name}_last_90d": counts[kind] if kind in counts else 0
            for name, kind in (("sent", "send"), ("opened", "open"), ("clicked", "click"))
        }
    )
    email_features["has_unsubscribed"] = (counts["unsubscribe"] > 0) if "unsubscribe" in counts else False

    sessions = _read(
        landing,
        SESSIONS,
        ["customer_id", "started_at", "pages_viewed"],
        lambda f: (f.started_at < end) & (f.started_at >= d90),
    )
    session_features = pd.DataFrame(
        {
            "sessions_last_30d": sessions[sessions.started_at >= d30].groupby("customer_id").size(),
            "sessions_last_90d": sessions.groupby("customer_id").size(),
            "pages_per_session_last_90d": sessions.groupby("customer_id").pages_viewed.mean(),
        }
    )

    features = pd.concat([order_features, ticket_features, survey_features, email_features, session_features], axis=1)
    return int(np.count_nonzero(features.index.notna()))


if __name__ == "__main__":  # the benchmark runs each reference in a process of its own
    import sys

    reference = {"floor": duckdb_floor, "pandas": pandas_reference}[sys.argv[1]]
    print(reference(Path(sys.argv[2]), date.fromisoformat(sys.argv[3])))
