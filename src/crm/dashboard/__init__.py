"""The analysts' dashboard: a Streamlit app (crm/dashboard/app.py) over the BI copy, read-only.

This module holds what the app shows, as queries over the published tables, importable and testable
without Streamlit: the headline metrics (marts.metrics_daily, where they are defined once), churn
risk, segments, satisfaction, customer value and recommendations, campaign lift, and data quality.
It reads what BI tools read: the BI copy's file on DuckDB, opened read-only for each page so that a
new publication (a file moved over the old one) shows on the next load; the bi_ schemas on
PostgreSQL; the bi_ views of a Spark cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import duckdb
import pandas as pd

from crm.settings import Settings
from crm.warehouse import DuckDBWarehouse, Warehouse, open_warehouse

# Share of customers in ten equal ranges of a probability.
PROBABILITY_BINS = 10


class NothingPublished(RuntimeError):
    """There is no BI copy to show yet."""


@contextlib.contextmanager
def open_bi(settings: Settings) -> Iterator[Warehouse]:
    """The publication BI reads, for one page's queries."""
    if settings.warehouse_engine == "duckdb":
        if not settings.bi_warehouse_path.exists():
            raise NothingPublished(f"no BI copy at {settings.bi_warehouse_path} yet: `make run` publishes one")
        con = duckdb.connect(str(settings.bi_warehouse_path), read_only=True)
        try:
            yield DuckDBWarehouse(con)
        finally:
            con.close()
        return
    if settings.spark_local_session:
        raise NothingPublished(
            "a local Spark session's metastore admits one process, the pipeline's: the dashboard reads a "
            "Spark warehouse on a cluster (spark+connect:// or spark://)"
        )
    with open_warehouse(settings, read_only=True) as warehouse:
        yield warehouse


def published(settings: Settings, table: str) -> str:
    """How BI names a published table (schema.name): as is in the BI copy, bi_<schema>.name on a server
    (PostgreSQL's schemas and Spark's views take the same names)."""
    from crm.postgres import published_name

    return table if settings.warehouse_engine == "duckdb" else published_name(table)


class Dashboard:
    """The dashboard's figures, each a query of the publication."""

    def __init__(self, settings: Settings, bi: Warehouse) -> None:
        self.settings = settings
        self.bi = bi

    def _frame(self, query: str, params: tuple = ()) -> pd.DataFrame:
        return self.bi.frame(query, params)

    def _table(self, table: str) -> str:
        return published(self.settings, table)

    def headline(self) -> dict[str, object]:
        """The latest day's metrics (marts.metrics_daily): its active customers, the revenue in EUR of
        the churn window up to it, the latest observed churn rate, and how many customers are scored."""
        metrics = self._table("marts.metrics_daily")
        latest = self._frame(
            f"select metric_date, active_customers, churn_window_days from {metrics} "
            f"where metric_date = (select max(metric_date) from {metrics})"
        )
        if latest.empty:
            return {}
        day, active, window = pd.Timestamp(latest.iloc[0, 0]).date(), int(latest.iloc[0, 1]), int(latest.iloc[0, 2])
        revenue = self._frame(
            f"select sum(revenue_eur) as revenue_eur from {metrics} where metric_date > ? and metric_date <= ?",
            (day - timedelta(days=window), day),
        )
        churn = self._frame(
            f"select metric_date, churn_rate from {metrics} where metric_date = "
            f"(select max(metric_date) from {metrics} where churn_rate is not null)"
        )
        scored = self._frame(
            f"select count(churn_probability) as scored, max(churn_scored_as_of) as scored_as_of "
            f"from {self._table('marts.customer_360')}"
        )
        return {
            "metric_date": day,
            "active_customers": active,
            "window_days": window,
            "revenue_eur": float(revenue.iloc[0, 0] or 0.0),
            "churn_rate": None if churn.empty else float(churn.iloc[0]["churn_rate"]),
            "churn_rate_date": None if churn.empty else pd.Timestamp(churn.iloc[0]["metric_date"]).date(),
            "scored_customers": int(scored.iloc[0]["scored"]),
            "scored_as_of": scored.iloc[0]["scored_as_of"],
        }

    def daily_metrics(self) -> pd.DataFrame:
        return self._frame(
            "select metric_date, completed_orders, revenue_eur, active_customers, churn_rate "
            f"from {self._table('marts.metrics_daily')} order by metric_date"
        )

    def risk_bands(self) -> pd.DataFrame:
        """Customers per churn risk band, high first, with the band's mean churn probability."""
        return self._frame(
            "select churn_risk_band, count(*) as customers, avg(churn_probability) as mean_churn_probability "
            f"from {self._table('marts.customer_360')} where churn_risk_band is not null "
            "group by churn_risk_band "
            "order by case churn_risk_band when 'high' then 1 when 'medium' then 2 else 3 end"
        )

    def band_thresholds(self) -> dict[str, float]:
        rows = self._frame(
            f"select term, value from {self._table('marts.definitions')} "
            "where term in ('churn_risk_band_high_from', 'churn_risk_band_medium_from')"
        )
        return {term.removeprefix("churn_risk_band_").removesuffix("_from"): value for term, value in rows.values}

    def probability_distribution(self, column: str) -> pd.DataFrame:
        """Customers per tenth of a probability column of customer_360 (churn or satisfaction)."""
        assert column in ("churn_probability", "satisfied_probability"), column
        frame = self._frame(
            f"select least(cast(floor({column} * {PROBABILITY_BINS}) as integer), {PROBABILITY_BINS - 1}) as bin, "
            f"count(*) as customers from {self._table('marts.customer_360')} where {column} is not null group by 1"
        )
        frame["range"] = [f"{b / PROBABILITY_BINS:.1f}–{(b + 1) / PROBABILITY_BINS:.1f}" for b in frame["bin"]]
        return frame.sort_values("bin")[["range", "customers"]].reset_index(drop=True)

    def churn_trend(self) -> pd.DataFrame:
        """Per scoring date: customers scored, mean churn probability, and the share in the high band."""
        high = self.band_thresholds().get("high", 1.0)
        return self._frame(
            "select as_of_date, count(*) as customers, avg(churn_probability) as mean_churn_probability, "
            "avg(case when churn_probability >= ? then 1.0 else 0.0 end) as high_risk_share "
            f"from {self._table('scores.churn')} group by as_of_date order by as_of_date",
            (high,),
        )

    def top_churn_drivers(self, limit: int = 10) -> pd.DataFrame:
        """The features most often first among the latest scoring's high-risk customers' drivers."""
        high = self.band_thresholds().get("high", 1.0)
        churn = self._table("scores.churn")
        return self._frame(
            f"select driver_1 as driver, count(*) as customers from {churn} "
            f"where as_of_date = (select max(as_of_date) from {churn}) and churn_probability >= ? "
            f"and driver_1 is not null group by driver_1 order by customers desc, driver limit {int(limit)}",
            (high,),
        )

    def segments(self) -> pd.DataFrame:
        """Each segment's size and profile (customer_360's latest figures)."""
        return self._frame(
            "select segment_name, count(*) as customers, avg(recency_days) as mean_recency_days, "
            "avg(frequency) as mean_orders, avg(monetary) as mean_spend_eur, "
            "avg(churn_probability) as mean_churn_probability, "
            "avg(satisfied_probability) as mean_satisfied_probability, "
            "avg(expected_revenue_eur) as mean_expected_revenue_eur "
            f"from {self._table('marts.customer_360')} where segment_name is not null "
            "group by segment_name order by customers desc, segment_name"
        )

    def value_tiers(self) -> pd.DataFrame:
        return self._frame(
            "select value_tier, count(*) as customers, sum(expected_revenue_eur) as expected_revenue_eur, "
            "max(value_horizon_days) as horizon_days "
            f"from {self._table('marts.customer_360')} where value_tier is not null "
            "group by value_tier order by expected_revenue_eur desc"
        )

    def top_recommended_products(self, limit: int = 10) -> pd.DataFrame:
        recommendations = self._table("scores.recommendations")
        return self._frame(
            "select product_id, count(*) as customers, avg(rank) as mean_rank "
            f"from {recommendations} where as_of_date = (select max(as_of_date) from {recommendations}) "
            f"group by product_id order by customers desc, product_id limit {int(limit)}",
        )

    def campaigns(self, limit: int = 20) -> pd.DataFrame:
        """The latest campaign variants' conversion against their control group, with the lift's 95%
        interval."""
        return self._frame(
            "select campaign_name, variant, sent_on, recipients, conversion_rate, control_conversion_rate, "
            "absolute_lift, absolute_lift_ci_lower, absolute_lift_ci_upper, is_lift_significant "
            f"from {self._table('marts.campaign_performance')} "
            f"order by sent_on desc, campaign_name, variant limit {int(limit)}"
        )

    def campaign_count(self) -> int:
        return int(self._frame(f"select count(*) as n from {self._table('marts.campaign_performance')}").iloc[0, 0])

    def quarantine_by_source_and_reason(self) -> pd.DataFrame:
        return self._frame(
            "select source, rejected_at, reason, cast(sum(rejected_rows) as bigint) as rejected_rows, "
            "min(partition_date) as first_day, max(partition_date) as last_day "
            f"from {self._table('marts.quarantine_daily')} group by source, rejected_at, reason "
            "order by rejected_rows desc, source, reason"
        )

    def quarantine_by_day(self) -> pd.DataFrame:
        return self._frame(
            "select partition_date, source, cast(sum(rejected_rows) as bigint) as rejected_rows "
            f"from {self._table('marts.quarantine_daily')} group by partition_date, source order by partition_date"
        )

    def quality_gates(self) -> pd.DataFrame:
        """What each quality gate's suites decided at the latest run day (monitoring.quality_gates)."""
        gates = self._table("monitoring.quality_gates")
        return self._frame(
            "select as_of_date, gate, suite, validations, rows_validated, expectations, failed_expectations, "
            f"blocking_failures, passed from {gates} where as_of_date = (select max(as_of_date) from {gates}) "
            "order by case gate when 'raw' then 1 when 'marts' then 2 else 3 end, suite"
        )

    def model_alerts(self) -> pd.DataFrame:
        """The monitoring alerts of the latest scoring date (drift, backtest quality, calibration)."""
        alerts = self._table("monitoring.alerts")
        return self._frame(
            f"select model_name, scoring_date, kind, subject, message from {alerts} "
            f"where scoring_date = (select max(scoring_date) from {alerts}) order by model_name, kind, subject"
        )
