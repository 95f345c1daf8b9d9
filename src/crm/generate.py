"""Seeded synthetic CRM exports, written through the landing contract (docs/sources.md).

Latent customer traits drive what the sources show: ``engagement`` sets how often a customer
buys, ``spend`` how much, and a churn hazard (raised by low satisfaction) ends the active life.
Orders are a Poisson process while the customer is active. The generator also simulates the
churn window after the last delivered day without delivering it, and writes the realised outcome
and the true churn probability to the truth folder, which the pipeline never reads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm.landing import partition_dir

FIRST_NAMES = np.array(["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas",
                        "Klara", "Leon", "Mia", "Noah", "Olivia", "Paul", "Rosa", "Sam", "Tara", "Umar"])
LAST_NAMES = np.array(["Meyer", "Schmidt", "Novak", "Rossi", "Garcia", "Jensen", "Dubois", "Smith",
                       "Kowalski", "Silva", "Nagy", "Berg", "Costa", "Weber", "Moreau", "Larsen"])
CITIES = np.array([("Berlin", "DE"), ("Hamburg", "DE"), ("Munich", "DE"), ("Vienna", "AT"),
                   ("Zurich", "CH"), ("Paris", "FR"), ("Lyon", "FR"), ("Madrid", "ES")])
CHANNELS = np.array(["organic", "paid_search", "social", "referral", "email"])
ORDER_CHANNELS = np.array(["web", "app", "store"])
ORDER_STATUSES = np.array(["completed", "cancelled", "returned"])
ORDER_STATUS_P = np.array([0.9, 0.05, 0.05])


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int = 2_000
    days: int = 730
    end_date: date = date(2026, 11, 23)
    seed: int = 7
    churn_window_days: int = 90

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)


def generate(config: GeneratorConfig, landing_dir: Path, truth_dir: Path) -> dict[str, int]:
    """Write every daily partition for ``config`` and the ground truth; return row counts per source."""
    rng = np.random.default_rng(config.seed)
    n, days, window = config.customers, config.days, config.churn_window_days
    ids = np.arange(1, n + 1)

    # Latent traits. Days are integer offsets from start_date; the window after the last day is simulated too.
    signup_day = rng.integers(0, max(days - 30, 1), n)
    engagement = rng.lognormal(mean=np.log(1 / 45), sigma=0.6, size=n)  # orders per active day
    spend = rng.lognormal(mean=np.log(60), sigma=0.5, size=n)  # mean order value
    satisfaction = rng.beta(5, 2, n)
    hazard = 1 / rng.lognormal(mean=np.log(500), sigma=0.5, size=n) * (0.4 + 1.6 * (1 - satisfaction))
    end_of_life = signup_day + rng.exponential(1 / hazard)
    horizon = days + window
    active_until = np.minimum(end_of_life, horizon)

    # Orders: Poisson counts over each active span, then uniform times inside it.
    span = np.maximum(active_until - signup_day, 0)
    counts = rng.poisson(engagement * span)
    owner = np.repeat(np.arange(n), counts)
    at = signup_day[owner] + rng.random(owner.size) * span[owner]
    order = np.argsort(at, kind="stable")
    owner, at = owner[order], at[order]
    day = np.floor(at).astype(np.int64)
    status = rng.choice(ORDER_STATUSES, size=owner.size, p=ORDER_STATUS_P)
    amount = np.round(rng.gamma(4.0, spend[owner] / 4.0), 2)
    seconds = np.floor((at - day) * 86_400).astype(np.int64)
    start = np.datetime64(config.start_date.isoformat(), "s")
    ordered_at = start + (day * 86_400 + seconds).astype("timedelta64[s]")
    orders = pd.DataFrame({
        "order_id": np.arange(1, owner.size + 1),
        "customer_id": ids[owner],
        "ordered_at": ordered_at,
        "status": status,
        "amount": amount,
        "currency": "EUR",
        "channel": rng.choice(ORDER_CHANNELS, size=owner.size, p=[0.6, 0.3, 0.1]),
    })

    first = rng.choice(FIRST_NAMES, n)
    last = rng.choice(LAST_NAMES, n)
    city = CITIES[rng.integers(0, len(CITIES), n)]
    signup_dates = np.datetime64(config.start_date.isoformat(), "D") + signup_day.astype("timedelta64[D]")
    customers = pd.DataFrame({
        "customer_id": ids,
        "first_name": first,
        "last_name": last,
        "email": [f"{f.lower()}.{l.lower()}.{i}@example.com" for f, l, i in zip(first, last, ids)],
        "phone": [f"+49 30 {i:07d}" for i in ids],
        "birth_date": (np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, n).astype("timedelta64[D]")).astype(str),
        "gender": rng.choice(np.array(["f", "m", "d"]), n, p=[0.49, 0.49, 0.02]),
        "city": city[:, 0],
        "country": city[:, 1],
        "signup_date": signup_dates.astype(str),
        "acquisition_channel": rng.choice(CHANNELS, n),
        "email_consent": rng.random(n) < 0.7,
        "updated_at": [f"{d}T09:00:00" for d in signup_dates.astype(str)],
    })

    delivered_orders = orders[day < days]
    _write_daily(customers, signup_day, config, landing_dir, "customers", _write_csv)
    _write_daily(delivered_orders, day[day < days], config, landing_dir, "orders", _write_parquet)

    # Ground truth: the realised outcome over the undelivered window and the true churn probability
    # (no completed order in the window) given the latent state on the last delivered day.
    future = orders[(day >= days) & (status == "completed")]
    future_spend = future.groupby("customer_id")["amount"].sum()
    completed_rate = engagement * ORDER_STATUS_P[0]
    alive = end_of_life >= days
    total = hazard + completed_rate
    p_no_order_if_alive = hazard / total * (1 - np.exp(-total * window)) + np.exp(-total * window)
    truth = pd.DataFrame({
        "customer_id": ids,
        "engagement": engagement,
        "satisfaction": satisfaction,
        "true_churn_probability": np.where(alive, p_no_order_if_alive, 1.0),
        "churned": ~np.isin(ids, future["customer_id"].to_numpy()),
        "future_spend": future_spend.reindex(ids, fill_value=0.0).to_numpy(),
    })[signup_day < days]
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth.to_parquet(truth_dir / "customers.parquet", index=False)
    counts = {"customers": len(customers), "orders": len(delivered_orders)}
    manifest = {"config": {**asdict(config), "end_date": config.end_date.isoformat()}, "rows": counts}
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return counts


def _write_daily(frame: pd.DataFrame, day: np.ndarray, config: GeneratorConfig, landing_dir: Path,
                 source: str, writer) -> None:
    """One partition per delivered day, empty days included (a daily export always arrives)."""
    order = np.argsort(day, kind="stable")
    frame, day = frame.iloc[order], day[order]
    bounds = np.searchsorted(day, np.arange(config.days + 1))
    for offset in range(config.days):
        folder = partition_dir(landing_dir, source, config.start_date + timedelta(days=offset))
        folder.mkdir(parents=True, exist_ok=True)
        writer(frame.iloc[bounds[offset]:bounds[offset + 1]], folder / source)


def _write_csv(frame: pd.DataFrame, stem: Path) -> None:
    frame.to_csv(stem.with_suffix(".csv"), index=False, lineterminator="\n")


def _write_parquet(frame: pd.DataFrame, stem: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, stem.with_suffix(".parquet"), compression="zstd")
