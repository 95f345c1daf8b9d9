"""The analysts' dashboard (Streamlit): `crm ui` serves it on loopback, `streamlit run` this file too.

Read-only over the BI copy (crm.dashboard); every figure is a query of the published tables, and the
metrics come from marts.metrics_daily, where they are defined once. Tables are rendered as plain
tables (st.table), so that their numbers are text a browser, a screen reader and the tests can read.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from crm.dashboard import Dashboard, NothingPublished, open_bi
from crm.settings import Settings

TITLE = "CRM dashboard"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _euros(value: float) -> str:
    return f"€{value:,.0f}"


def _cell(value: object, digits: int) -> object:
    """A table cell as text: dates without a time, thousands separated, ``digits`` decimals, – for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "–"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return value


def _table(container, frame: pd.DataFrame, index: list[str], digits: int = 2) -> None:
    """A plain table (its numbers are text on the page), ``index`` columns first (several merge the
    cells of repeated values)."""
    cells = frame.astype(object).apply(lambda column: [_cell(value, digits) for value in column])
    container.table(cells.set_index(index))


def _source(settings: Settings) -> str:
    """Where the figures come from: the BI copy's file relative to the platform's home, or the server's schemas."""
    if settings.warehouse_engine == "duckdb" and settings.bi_warehouse_path.is_relative_to(settings.home):
        return f"the BI copy, {settings.bi_warehouse_path.relative_to(settings.home)}"
    return settings.bi_location


def render(board: Dashboard) -> None:
    headline = board.headline()
    if not headline:
        st.info("The BI copy has no orders yet.")
        return
    st.caption(
        f"Source: {_source(board.settings)}. Metrics as of {headline['metric_date']}; churn scores as of "
        f"{_cell(headline['scored_as_of'], 0)}. Definitions: marts.definitions and marts.metrics_daily."
    )
    active, revenue, churn, scored = st.columns(4)
    active.metric("Active customers", f"{headline['active_customers']:,}")
    revenue.metric(f"Revenue, last {headline['window_days']} days", _euros(headline["revenue_eur"]))
    churn.metric(
        "Churn rate",
        _percent(headline["churn_rate"]),
        help=f"Of the customers active on {headline['churn_rate_date']}, the share with no completed order in the "
        f"{headline['window_days']} days after it (the latest day whose window has closed).",
    )
    scored.metric("Customers scored", f"{headline['scored_customers']:,}")

    daily = board.daily_metrics().set_index("metric_date")
    left, right = st.columns(2)
    left.subheader("Revenue per day (EUR)")
    left.line_chart(daily["revenue_eur"])
    right.subheader("Active customers")
    right.line_chart(daily["active_customers"])

    st.header("Churn risk")
    thresholds = board.band_thresholds()
    st.caption(
        f"Bands: high from a churn probability of {thresholds.get('high', float('nan')):.2f}, medium from "
        f"{thresholds.get('medium', float('nan')):.2f} (marts.definitions)."
    )
    bands, distribution = st.columns(2)
    bands.subheader("Customers per band")
    _table(bands, board.risk_bands(), ["churn_risk_band"], 3)
    distribution.subheader("Customers per churn probability")
    distribution.bar_chart(board.probability_distribution("churn_probability").set_index("range"))
    trend, drivers = st.columns(2)
    trend.subheader("Over scoring dates")
    churn_trend = board.churn_trend()
    if len(churn_trend) > 1:
        trend.line_chart(churn_trend.set_index("as_of_date")[["mean_churn_probability", "high_risk_share"]])
    else:
        _table(trend, churn_trend, ["as_of_date"], 3)
    drivers.subheader("Top drivers of high risk")
    _table(drivers, board.top_churn_drivers(), ["driver"])

    st.header("Segments")
    _table(st, board.segments(), ["segment_name"])

    st.header("Satisfaction")
    st.caption("Customers per probability of being satisfied (marts.definitions: satisfied)")
    st.bar_chart(board.probability_distribution("satisfied_probability").set_index("range"))

    st.header("Customer value and recommendations")
    value, products = st.columns(2)
    value.subheader("Value tiers")
    _table(value, board.value_tiers(), ["value_tier"], 0)
    products.subheader("Most recommended products")
    _table(products, board.top_recommended_products(), ["product_id"], 1)

    st.header("Campaign lift")
    campaigns = board.campaigns()
    st.caption(
        f"The latest {len(campaigns)} of {board.campaign_count()} campaign variants: conversion against the "
        "campaign's control group, and the lift's 95% interval (marts.campaign_performance)."
    )
    _table(st, campaigns, ["campaign_name", "variant"], 3)

    st.header("Data quality")
    gates = board.quality_gates()
    if not gates.empty:
        blocked = int((~gates["passed"].astype(bool)).sum())
        st.subheader(f"Quality gates on {_cell(pd.Timestamp(gates['as_of_date'].iloc[0]), 0)}")
        st.caption(
            ("Every suite passed." if not blocked else f"{blocked} suite(s) blocked the run.")
            + " The failing rows' samples are in that run's Data Docs."
        )
        _table(st, gates.drop(columns="as_of_date"), ["suite"])
    st.subheader("Quarantined rows by source, stage and reason")
    quarantine = board.quarantine_by_source_and_reason()
    if quarantine.empty:
        st.write("No row was quarantined.")
    else:
        _table(st, quarantine, ["source"])
        by_day = board.quarantine_by_day()
        by_month = by_day.assign(month=pd.to_datetime(by_day["partition_date"]).dt.to_period("M").dt.to_timestamp())
        st.caption("Quarantined rows per delivery month and source")
        st.bar_chart(by_month.pivot_table(index="month", columns="source", values="rejected_rows", aggfunc="sum"))
    alerts = board.model_alerts()
    st.subheader("Model monitoring alerts")
    if alerts.empty:
        st.write("No alert at the latest scoring date.")
    else:
        _table(st, alerts, ["model_name"])


def main() -> None:
    st.set_page_config(page_title=TITLE, layout="wide")
    st.title(TITLE)
    settings = Settings.from_env()
    try:
        with open_bi(settings) as bi:
            render(Dashboard(settings, bi))
    except NothingPublished as missing:
        st.warning(str(missing))


main()
