"""Seeded synthetic CRM exports, written day by day through the landing contract (crm.contracts).

The model behind the data. Every customer belongs to a latent segment that sets how often they
buy, how much, and how satisfied they tend to be. Each day a signed-up customer is *active*,
*lapsed* (buys rarely, may come back) or *churned* (gone for good); the daily chances of lapsing
and churning rise as satisfaction falls and as email fatigue builds up, and satisfaction falls
after bad support experiences. What the sources show follows from that state: orders and web
sessions, support tickets (more after orders, slower and angrier when things go wrong), survey
answers (NPS and CSAT from satisfaction), campaign sends, opens, clicks, unsubscribes and
conversions (campaigns lift purchases for a week; a random hold-out group gets nothing).

Churn therefore shows in observable history only indirectly (recency, falling frequency, bad
tickets, low NPS, fading email engagement), which keeps prediction honest. The generator also
simulates the churn window after the last delivered day without delivering it, and writes to the
truth folder, which the pipeline never reads: per customer the latent segment, the true
satisfaction and probability of being satisfied, the exact probability of churning (no completed
order in the window) given the state on the last day, and the realised outcome. A manifest counts
every injected defect by source and kind.

What customers buy. Each customer has category affinities drawn around their segment's (so
segments differ in taste and customers within one too); an order line picks a category by those
affinities, then the product of that category priced nearest the customer's usual spend per line
(give or take a few neighbours), and a further line of an order is often the first line's companion
product (products bought together). The truth also holds the products each customer buys in the
undelivered window and the parameters of that choice, so recommendations can be graded against what
the simulation knows (ml.ground_truth).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from crm.contracts import CONTRACTS
from crm.landing import partition_dir
from crm.progress import progress

ACTIVE, LAPSED, CHURNED, NOT_YET = 0, 1, 2, 3

# name: share, purchases per active day, mean order value (EUR), satisfaction Beta(a, b),
#       daily chance to lapse, to churn (at average satisfaction)
SEGMENTS = {
    "champions": (0.12, 1 / 7, 90.0, (8, 2), 0.0040, 0.00002),
    "loyal": (0.20, 1 / 20, 60.0, (6, 2), 0.0080, 0.00004),
    "bargain_hunters": (0.18, 1 / 33, 25.0, (4, 3), 0.0120, 0.00008),
    "occasional": (0.28, 1 / 122, 85.0, (5, 3), 0.0080, 0.00008),
    "at_risk": (0.22, 1 / 78, 35.0, (2.5, 3.5), 0.0200, 0.00020),
}
# Tuned so that the Bayes-optimal churn ROC-AUC (true probabilities against realised outcomes) is
# about 0.85, like real retail data, with about 18 orders per customer over two years.
LAPSED_PURCHASE_FACTOR = 0.3
REACTIVATION = 0.02
COMPLETED_SHARE = 0.9  # the rest is cancelled or returned
CAMPAIGN_EVERY_DAYS = 14
CAMPAIGN_LIFT = {"A": 0.15, "B": 0.30}
CAMPAIGN_EFFECT_DAYS = 7

COUNTRIES = [
    ("DE", "EUR", 1.0, ["Berlin", "Hamburg", "Munich", "Cologne"], ["BE", "HH", "BY", "NW"]),
    ("AT", "EUR", 1.0, ["Vienna", "Graz"], ["W", "ST"]),
    ("FR", "EUR", 1.0, ["Paris", "Lyon"], ["IDF", "ARA"]),
    ("CH", "CHF", 0.94, ["Zurich", "Geneva"], ["ZH", "GE"]),
    ("GB", "GBP", 0.85, ["London", "Leeds"], ["ENG", "ENG"]),
]
COUNTRY_SHARES = [0.55, 0.1, 0.15, 0.1, 0.1]
FIRST_NAMES = np.array(
    [
        "Anna",
        "Ben",
        "Clara",
        "David",
        "Emma",
        "Felix",
        "Greta",
        "Hugo",
        "Ida",
        "Jonas",
        "Klara",
        "Leon",
        "Mia",
        "Noah",
        "Olivia",
        "Paul",
        "Rosa",
        "Sam",
        "Tara",
        "Umar",
    ]
)
LAST_NAMES = np.array(
    [
        "Meyer",
        "Schmidt",
        "Novak",
        "Rossi",
        "Garcia",
        "Jensen",
        "Dubois",
        "Smith",
        "Kowalski",
        "Silva",
        "Nagy",
        "Berg",
        "Costa",
        "Weber",
        "Moreau",
        "Larsen",
    ]
)
CATEGORIES = ["apparel", "shoes", "home", "beauty", "electronics", "sports"]
# Per segment, the mean share of its order lines in each of CATEGORIES; a customer's own affinities
# are drawn from a Dirichlet around it with this concentration (lower: customers differ more).
CATEGORY_AFFINITY = {
    "champions": (0.30, 0.25, 0.10, 0.20, 0.05, 0.10),
    "loyal": (0.15, 0.10, 0.35, 0.15, 0.10, 0.15),
    "bargain_hunters": (0.25, 0.10, 0.25, 0.25, 0.05, 0.10),
    "occasional": (0.05, 0.05, 0.15, 0.05, 0.50, 0.20),
    "at_risk": (0.10, 0.10, 0.10, 0.10, 0.20, 0.40),
}
AFFINITY_CONCENTRATION = 2.0
# A line's product is the category's product priced nearest the line's target, moved by a normal
# number of neighbours with this spread; a further line of an order is the first line's companion
# with this chance.
PRICE_NEIGHBOUR_SPREAD = 1.5
COMPANION_CHANCE = 0.5
ITEMS_PER_ORDER_EXTRA = 0.6  # an order has 1 + Poisson(this) lines
LINE_PRICE_SPREAD = 0.3  # a line's target price: the order value / lines, times a lognormal of this sigma
TICKET_CATEGORIES = np.array(["delivery", "billing", "product", "returns", "account"])
POSITIVE_TEXT = np.array(
    [
        "Quick help, thank you.",
        "Great service as always.",
        "Love the products!",
        "Fast delivery and friendly support.",
        "Everything arrived in perfect condition.",
    ]
)
NEUTRAL_TEXT = np.array(
    ["It was okay.", "Delivery took a while but fine.", "Average experience.", "Product as described.", ""]
)
NEGATIVE_TEXT = np.array(
    [
        "Still waiting for my refund, very disappointed.",
        "Nobody answers my emails.",
        "The item broke after two days, terrible quality.",
        "Too many emails, unsubscribe me.",
        "Worst support ever, I will shop elsewhere.",
    ]
)
TICKET_TEXT = {
    "delivery": "My parcel has not arrived yet.",
    "billing": "I was charged twice for my order.",
    "product": "The product does not work as expected.",
    "returns": "How do I return my order?",
    "account": "I cannot log in to my account.",
}


@dataclass(frozen=True)
class DefectRates:
    """Share of records (or number of batches) that get each defect; all counted in the manifest."""

    duplicate_person: float = 0.01  # the same person again under a second customer id
    invalid_email: float = 0.005
    invalid_phone: float = 0.005
    missing_required: float = 0.002
    non_positive_amount: float = 0.002
    future_timestamp: float = 0.001
    unknown_customer: float = 0.001
    redelivered_duplicate: float = 0.005
    late_arriving: float = 0.01
    malformed_line_per_file: float = 0.05  # chance that a daily CSV or JSON-lines file holds a truncated line
    schema_drift_batches: int = 1  # daily batches with an extra, unannounced column (accepted)
    renamed_column_batches: int = 0  # daily batches with a renamed contract column (refused at load)

    @classmethod
    def none(cls) -> DefectRates:
        return cls(**{f.name: 0 for f in fields(cls)})


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int = 2_000
    days: int = 730
    end_date: date = date(2026, 11, 23)
    seed: int = 7
    churn_window_days: int = 90
    defects: DefectRates = field(default_factory=DefectRates)
    # A change of behaviour from a date on, for testing monitoring: from ``shift_date`` every customer
    # buys ``shift_purchase_factor`` times as often (0.6: a price rise that lowers purchase rates).
    # None: no shift, and the simulation draws exactly what it drew before the option existed.
    shift_date: date | None = None
    shift_purchase_factor: float = 1.0

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)

    def purchase_factor(self, day: int) -> float:
        """The shift's factor on purchase rates at simulation day ``day`` (0 = start_date)."""
        if self.shift_date is None or day < (self.shift_date - self.start_date).days:
            return 1.0
        return self.shift_purchase_factor


Rows = dict[str, np.ndarray]  # one array per column, all of one length: far cheaper than DataFrames here


def _rows(length: int, **columns: object) -> Rows:
    """Columns as arrays of ``length``; scalars are repeated."""
    return {name: np.asarray(value) if np.ndim(value) else np.full(length, value) for name, value in columns.items()}


def _take(rows: Rows, index: np.ndarray) -> Rows:
    return {name: values[index] for name, values in rows.items()}


def _length(rows: Rows) -> int:
    return len(next(iter(rows.values())))


class DailyWriter:
    """Buffers each source's rows by delivery day and writes a day's partitions when the day closes."""

    def __init__(self, landing_dir: Path, config: GeneratorConfig, defects: dict[str, dict[str, int]]):
        self.landing_dir, self.config, self.defects = landing_dir, config, defects
        self.pending: dict[tuple[str, int], list[Rows]] = defaultdict(list)
        self.rows: dict[str, int] = defaultdict(int)
        self.schema_drift: dict[tuple[str, int], tuple[str, str]] = {}  # (source, day) -> (kind, column)
        self.malformed: dict[tuple[str, int], int] = defaultdict(int)

    def add(self, source: str, day: np.ndarray | int, rows: Rows) -> None:
        length = _length(rows)
        if not length:
            return
        days = np.broadcast_to(np.asarray(day), (length,))
        for delivery_day in np.unique(days):
            if delivery_day < self.config.days:
                self.pending[(source, int(delivery_day))].append(_take(rows, days == delivery_day))

    def close_day(self, day: int) -> None:
        for source, contract in CONTRACTS.items():
            batches = self.pending.pop((source, day), [])
            table = pa.table(
                {
                    column.name: _arrow_column(column.type, [b[column.name] for b in batches])
                    for column in contract.columns
                }
            )
            self.rows[source] += table.num_rows
            drift = self.schema_drift.get((source, day))
            if drift and drift[0] == "extra":
                table = table.append_column(drift[1], pa.array(["gold"] * table.num_rows, pa.string()))
            elif drift:
                table = table.rename_columns([f"{c}_renamed" if c == drift[1] else c for c in table.column_names])
            folder = partition_dir(self.landing_dir, source, self.config.start_date + timedelta(days=day))
            folder.mkdir(parents=True, exist_ok=True)
            broken = _write(
                contract.file_format, table, folder / contract.file_name, self.malformed.get((source, day), 0)
            )
            if broken:
                self.defects[source]["malformed_line"] += broken


_ARROW_TYPES = {
    "integer": pa.int64(),
    "decimal": pa.float64(),
    "text": pa.string(),
    "date": pa.string(),
    "timestamp": pa.timestamp("s"),
    "boolean": pa.string(),
}


def _arrow_column(column_type: str, parts: list[np.ndarray]) -> pa.Array:
    arrow_type = _ARROW_TYPES[column_type]
    if not parts:
        return pa.array([], arrow_type)
    values = np.concatenate(parts)
    if column_type == "integer" and values.dtype.kind == "f":  # NaN marks a missing integer
        missing = np.isnan(values)
        return pa.array(np.where(missing, 0, values).astype(np.int64), arrow_type, mask=missing)
    if values.dtype.kind in "OU":  # already text, as CSV sources deliver dates and timestamps
        return pa.array(values.astype(object), pa.string(), from_pandas=True)
    return pa.array(values, arrow_type)


def _write(file_format: str, table: pa.Table, path: Path, malformed_lines: int) -> int:
    """Write one partition file; return how many malformed lines it got (a file needs rows to cut)."""
    if file_format == "parquet":
        pq.write_table(table, path, compression="zstd")
        return 0
    if file_format == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
        text = sink.getvalue().to_pybytes().decode()
        broken = [",".join(line.split(",")[:3]) for line in text.splitlines()[1 : 1 + malformed_lines]]
    else:
        text = (
            table.to_pandas().to_json(orient="records", lines=True, date_format="iso", date_unit="s")
            if table.num_rows
            else ""
        )
        broken = [line[: len(line) // 2] for line in text.splitlines()[:malformed_lines]]
    # Malformed lines: a truncated copy of a real line (an export cut short), counted in the manifest.
    path.write_text(text + "".join(line + "\n" for line in broken))
    return len(broken)


def generate(config: GeneratorConfig, landing_dir: Path, truth_dir: Path) -> dict[str, object]:
    """Write every daily partition and the ground truth; return the manifest (rows and defects)."""
    return _Simulation(config, landing_dir, truth_dir).run()


class _Simulation:
    def __init__(self, config: GeneratorConfig, landing_dir: Path, truth_dir: Path):
        self.config, self.truth_dir = config, truth_dir
        self.rng = np.random.default_rng(config.seed)
        # Which products are bought is drawn from a stream of its own, so that everything else the
        # seed gives (customers, orders, amounts' draws, defects) stays as it was before products
        # carried preferences.
        self.product_rng = np.random.default_rng([config.seed, 1])
        self.defects: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.writer = DailyWriter(landing_dir, config, self.defects)
        self.next_id = defaultdict(lambda: 1)

    # -- helpers -------------------------------------------------------------------------------
    def ids(self, source: str, count: int) -> np.ndarray:
        start = self.next_id[source]
        self.next_id[source] += count
        return np.arange(start, start + count, dtype=np.int64)

    def timestamps(self, day: int, count: int) -> np.ndarray:
        start = np.datetime64(self.config.start_date.isoformat(), "s") + np.timedelta64(day * 86_400, "s")
        return start + self.rng.integers(0, 86_400, count).astype("timedelta64[s]")

    def delivery_days(self, source: str, day: int, count: int) -> np.ndarray:
        """Mostly the same day; a few records arrive late (counted as a defect)."""
        late = self.rng.random(count) < self.config.defects.late_arriving
        self.defects[source]["late_arriving"] += int(late.sum())
        return day + np.where(late, self.rng.integers(1, 6, count), 0)

    def deliver(self, source: str, day: int, rows: Rows) -> None:
        """Deliver rows (some late), and re-deliver a few exact duplicates."""
        delivery = self.delivery_days(source, day, _length(rows))
        self.writer.add(source, delivery, rows)
        again = self.rng.random(_length(rows)) < self.config.defects.redelivered_duplicate
        if again.any():
            self.defects[source]["redelivered_duplicate"] += int(again.sum())
            self.writer.add(source, delivery[again] + self.rng.integers(0, 4, int(again.sum())), _take(rows, again))

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict[str, object]:
        config = self.config
        self._customers()
        self._products()
        self._plan_defect_batches()
        horizon = config.days + config.churn_window_days
        for day in progress(range(horizon), "simulating days", unit="day"):
            delivered = day < config.days
            if day == config.days:
                # From here on nothing observable happens, so the daily chances are frozen: that
                # makes the truth's churn probability exact for the simulated window.
                self.state_at_end = self.state.copy()
                self.rates_at_end = self._daily_probabilities()
            self._step_states(day)
            buyers = self._orders(day, delivered)
            if delivered:
                self._sessions(day, buyers)
                self._tickets(day, buyers)
                self._surveys(day)
                if day % CAMPAIGN_EVERY_DAYS == CAMPAIGN_EVERY_DAYS // 2 and day + CAMPAIGN_EFFECT_DAYS < config.days:
                    self._campaign(day)
                self._customer_changes(day)
                self.writer.close_day(day)
            self.fatigue *= np.exp(-1 / 30)
        return self._write_truth()

    def _customers(self) -> None:
        config, rng = self.config, self.rng
        n = config.customers
        names = list(SEGMENTS)
        shares = np.array([SEGMENTS[s][0] for s in names])
        self.segment = rng.choice(len(names), n, p=shares / shares.sum())
        self.segment_names = np.array(names)
        table = np.array([SEGMENTS[s][1:3] + SEGMENTS[s][4:6] for s in names])
        self.purchase_rate = table[self.segment, 0] * rng.lognormal(0, 0.25, n)
        self.order_value = table[self.segment, 1] * rng.lognormal(0, 0.2, n)
        self.base_lapse = table[self.segment, 2] * rng.lognormal(0, 0.3, n)
        self.base_churn = table[self.segment, 3] * rng.lognormal(0, 0.3, n)
        beta = np.array([SEGMENTS[s][3] for s in names], dtype=float)
        self.satisfaction = rng.beta(beta[self.segment, 0], beta[self.segment, 1])
        self.email_affinity = rng.beta(2, 5, n)
        means = np.array([CATEGORY_AFFINITY[s] for s in names])[self.segment]
        self.category_affinity = self._gamma_rows(AFFINITY_CONCENTRATION * means)
        # 40% existed before the history starts (the first delivery is the full master), the rest sign up
        # later, evenly up to the last day: a CRM's daily sign-ups do not stop before an export.
        existing = rng.random(n) < 0.4
        self.signup_day = np.where(existing, -rng.integers(1, 730, n), rng.integers(0, config.days, n))
        self.state = np.where(existing, np.where(rng.random(n) < 0.85, ACTIVE, LAPSED), NOT_YET)
        self.person_id = np.arange(1, n + 1)
        self.customer_id = self.ids("customers", n)
        country = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARES)
        self.currency = np.array([c[1] for c in COUNTRIES])[country]
        self.fx = np.array([c[2] for c in COUNTRIES])[country]
        city_pick = rng.integers(0, 2, n)
        first, last = rng.choice(FIRST_NAMES, n), rng.choice(LAST_NAMES, n)
        signup = np.datetime64(config.start_date.isoformat(), "D") + self.signup_day.astype("timedelta64[D]")
        self.master = _rows(
            n,
            customer_id=self.customer_id,
            first_name=first,
            last_name=last,
            email=np.char.add(
                np.char.add(np.char.add(np.char.lower(first.astype(str)), "."), np.char.lower(last.astype(str))),
                np.char.add(self.customer_id.astype(str), "@example.com"),
            ),
            phone=np.char.add("+49 30 ", np.char.zfill(self.customer_id.astype(str), 7)),
            birth_date=(np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, n).astype("timedelta64[D]")).astype(
                str
            ),
            gender=rng.choice(np.array(["f", "m", "d"]), n, p=[0.49, 0.49, 0.02]),
            city=np.array([COUNTRIES[c][3][p % len(COUNTRIES[c][3])] for c, p in zip(country, city_pick, strict=True)]),
            region=np.array(
                [COUNTRIES[c][4][p % len(COUNTRIES[c][4])] for c, p in zip(country, city_pick, strict=True)]
            ),
            country=np.array([c[0] for c in COUNTRIES])[country],
            signup_date=signup.astype(str),
            acquisition_channel=rng.choice(np.array(["organic", "paid_search", "social", "referral", "email"]), n),
            email_consent=np.where(rng.random(n) < 0.75, "true", "false"),
            updated_at=np.char.add(signup.astype(str), "T09:00:00"),
        )
        self.consent = self.master["email_consent"] == "true"
        self.unsubscribed = np.zeros(n, dtype=bool)
        self.changed_today = np.array([], dtype=np.int64)
        self.fatigue = np.zeros(n)
        self.boost_until = np.full(n, -1)
        self.boost_lift = np.zeros(n)
        self.clicked_until = np.full(n, -1)
        # The campaign each customer was last assigned to, and the variant (0 control, 1 A, 2 B).
        self.campaign_of = np.zeros(n, dtype=np.int64)
        self.variant_of = np.zeros(n, dtype=np.int64)
        self.window_spend = np.zeros(n)
        self.window_completed = np.zeros(n, dtype=np.int64)
        self.window_lines: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.spend_per_order_value = [0.0, 0.0]
        # Duplicate persons: a second record under a new id, some purchases land on it.
        self.duplicate_of = np.full(n, -1)
        dupes = np.flatnonzero(rng.random(n) < config.defects.duplicate_person)
        self.duplicate_id = np.full(n, -1, dtype=np.int64)
        self.duplicate_id[dupes] = self.ids("customers", len(dupes))
        self.duplicate_day = np.full(n, np.iinfo(np.int64).max)
        self.duplicate_day[dupes] = np.maximum(self.signup_day[dupes], 0) + rng.integers(0, 120, len(dupes))
        self.defects["customers"]["duplicate_person"] = len(dupes)
        self.n = n

    def _master_rows(self, index: np.ndarray, day: int, as_duplicate: bool = False) -> Rows:
        """Master records to deliver on ``day``, with contact-data defects applied."""
        rng, rates = self.rng, self.config.defects
        rows = _take(self.master, index)
        count = len(index)
        stamp = (self.config.start_date + timedelta(days=max(day, 0))).isoformat()
        rows["updated_at"] = np.full(count, f"{stamp}T{rng.integers(8, 18):02d}:00:00")
        rows["email_consent"] = np.where(self.consent[index] & ~self.unsubscribed[index], "true", "false")
        rows["email"] = rows["email"].astype(object)
        if as_duplicate:
            rows["customer_id"] = self.duplicate_id[index]
            emails = rows["email"].astype(str)
            rows["email"] = np.where(
                rng.random(count) < 0.5, np.char.upper(emails), np.char.add(np.char.add("  ", emails), " ")
            ).astype(object)
            rows["signup_date"] = np.full(count, stamp)
        bad_email = rng.random(count) < rates.invalid_email
        if bad_email.any():
            rows["email"][bad_email] = np.char.replace(rows["email"][bad_email].astype(str), "@", ".at.")
        bad_phone = rng.random(count) < rates.invalid_phone
        rows["phone"] = np.where(bad_phone, "12-AB", rows["phone"])
        missing = rng.random(count) < rates.missing_required
        rows["signup_date"] = np.where(missing, None, rows["signup_date"].astype(object))
        for kind, mask in (("invalid_email", bad_email), ("invalid_phone", bad_phone), ("missing_required", missing)):
            self.defects["customers"][kind] += int(mask.sum())
        return rows

    def _gamma_rows(self, concentration: np.ndarray) -> np.ndarray:
        """One Dirichlet draw per row of ``concentration`` (numpy's dirichlet takes one vector)."""
        draws = self.product_rng.gamma(concentration)
        return draws / draws.sum(axis=1, keepdims=True)

    def _products(self) -> None:
        rng = self.rng
        count = 200
        self.product_price = np.round(np.sort(rng.lognormal(np.log(30), 0.8, count)), 2)
        category = rng.choice(CATEGORIES, count)
        self.category_index = np.array([CATEGORIES.index(c) for c in category])
        # Per category, its products (indices into the price-sorted catalogue, so sorted by price).
        self.category_products = [np.flatnonzero(self.category_index == c) for c in range(len(CATEGORIES))]
        # Each product's companion: a product of another category, often bought in the same order.
        self.companion = np.empty(count, dtype=np.int64)
        for product in range(count):
            others = np.flatnonzero(self.category_index != self.category_index[product])
            self.companion[product] = self.product_rng.choice(others)
        products = _rows(
            count,
            product_id=np.arange(1, count + 1),
            product_name=np.array([f"Product {i:03d}" for i in range(1, count + 1)]),
            category=category,
            list_price=self.product_price,
            updated_at=np.datetime64(self.config.start_date.isoformat(), "s"),
        )
        self.writer.add("products", 0, products)

    def _line_products(self, buyers: np.ndarray, items: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The product (index into the catalogue) of each line of orders by ``buyers`` with ``items``
        lines each and per-line target prices ``target``: a category by the buyer's affinities, the
        category's product priced nearest the target give or take a few neighbours, and for a further
        line often the first line's companion."""
        rng = self.product_rng
        line_owner = np.repeat(np.arange(len(buyers)), items)
        cumulative = np.cumsum(self.category_affinity[buyers][line_owner], axis=1)
        category = (rng.random(len(line_owner))[:, None] > cumulative[:, :-1]).sum(axis=1)
        jitter = np.rint(rng.normal(0, PRICE_NEIGHBOUR_SPREAD, len(line_owner))).astype(np.int64)
        product = np.empty(len(line_owner), dtype=np.int64)
        for c, members in enumerate(self.category_products):
            lines = np.flatnonzero(category == c)
            nearest = np.searchsorted(self.product_price[members], target[lines])
            product[lines] = members[np.clip(nearest + jitter[lines], 0, len(members) - 1)]
        first_line = np.repeat(np.cumsum(items) - items, items)
        companion = (np.arange(len(line_owner)) != first_line) & (rng.random(len(line_owner)) < COMPANION_CHANCE)
        product[companion] = self.companion[product[first_line[companion]]]
        return product

    def _plan_defect_batches(self) -> None:
        rates, rng = self.config.defects, self.rng
        days = rng.permutation(np.arange(1, self.config.days))
        for count, kind, column in (
            (rates.schema_drift_batches, "extra", "loyalty_tier"),
            (rates.renamed_column_batches, "renamed", "email"),
        ):
            for day in days[:count]:
                self.writer.schema_drift[("customers", int(day))] = (kind, column)
                self.defects["customers"][
                    "schema_drift_extra_column" if kind == "extra" else "schema_drift_renamed_column"
                ] += 1
            days = days[count:]
        for source in ("customers", "surveys", "tickets", "marketing_events"):
            for day in np.flatnonzero(rng.random(self.config.days) < rates.malformed_line_per_file):
                self.writer.malformed[(source, int(day))] += 1

    def _daily_probabilities(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Today's chance to lapse, to churn, and to come back, per customer."""
        if hasattr(self, "rates_at_end"):
            return self.rates_at_end
        unhappy = (1 - self.satisfaction) ** 2
        lapse = self.base_lapse * (0.4 + 2.4 * unhappy) * (1 + 0.25 * self.fatigue)
        churn = self.base_churn * (0.3 + 3.0 * unhappy)
        return np.minimum(lapse, 0.5), np.minimum(churn, 0.5), np.full(self.n, REACTIVATION)

    def _step_states(self, day: int) -> None:
        rng = self.rng
        self.state[(self.state == NOT_YET) & (self.signup_day <= day)] = ACTIVE
        new = np.flatnonzero(self.signup_day == day)
        if day == 0:
            new = np.flatnonzero(self.signup_day <= 0)
        if day < self.config.days and len(new):
            self.deliver("customers", day, self._master_rows(new, day))
        dupes = np.flatnonzero(self.duplicate_day == day)
        if day < self.config.days and len(dupes):
            self.writer.add("customers", day, self._master_rows(dupes, day, as_duplicate=True))
        lapse, churn, back = self._daily_probabilities()
        u = rng.random(self.n)
        active, lapsed = self.state == ACTIVE, self.state == LAPSED
        self.state[active & (u < churn)] = CHURNED
        self.state[active & (u >= churn) & (u < churn + lapse)] = LAPSED
        self.state[lapsed & (u < churn)] = CHURNED
        self.state[lapsed & (u >= churn) & (u < churn + back)] = ACTIVE

    def _purchase_probability(self, day: int) -> np.ndarray:
        factor = np.select([self.state == ACTIVE, self.state == LAPSED], [1.0, LAPSED_PURCHASE_FACTOR], 0.0)
        lift = np.where(self.boost_until >= day, 1 + self.boost_lift, 1.0)
        return np.minimum(self.purchase_rate * factor * lift * self.config.purchase_factor(day), 0.9)

    def _orders(self, day: int, delivered: bool) -> np.ndarray:
        rng, rates = self.rng, self.config.defects
        buyers = np.flatnonzero(rng.random(self.n) < self._purchase_probability(day))
        count = len(buyers)
        status = rng.choice(np.array(["completed", "cancelled", "returned"]), count, p=[COMPLETED_SHARE, 0.05, 0.05])
        if not delivered:
            # The window is never delivered: its lines are drawn from the product stream only, so the
            # delivered data is the same whatever the window holds.
            completed = buyers[status == "completed"]
            self.window_completed[completed] += 1
            lines = self._lines(completed, self.product_rng)
            spend = self.product_price[lines[1]] * lines[2]
            np.add.at(self.window_spend, completed[lines[0]], spend)
            self.window_lines.append((completed[lines[0]], lines[1], lines[2]))
            return buyers
        line_owner, product, quantity = self._lines(buyers, rng)
        # What an order costs in EUR per unit of the buyer's latent order value, over the delivered
        # orders: the truth's reference of expected spend scales expected orders by it.
        self.spend_per_order_value[0] += float((self.product_price[product] * quantity).sum())
        self.spend_per_order_value[1] += float(self.order_value[buyers].sum())
        unit_price = np.round(self.product_price[product] * self.fx[buyers][line_owner], 2)
        amount = np.round(np.bincount(line_owner, weights=quantity * unit_price, minlength=count), 2)
        order_ids = self.ids("orders", count)
        ordered_at = self.timestamps(day, count)
        customer = self.customer_id[buyers].copy()
        on_duplicate = (self.duplicate_day[buyers] <= day) & (rng.random(count) < 0.4)
        customer[on_duplicate] = self.duplicate_id[buyers][on_duplicate]
        unknown = rng.random(count) < rates.unknown_customer
        customer[unknown] = 10_000_000_000 + order_ids[unknown]
        bad_amount = rng.random(count) < rates.non_positive_amount
        # Negative (an amount of 0 is a free order, not a defect); drawn as before, so the rest of the
        # dataset stays the same.
        amount[bad_amount] = -(np.abs(amount[bad_amount]) + 0.01) * (1 + rng.integers(0, 2, int(bad_amount.sum())))
        future = rng.random(count) < rates.future_timestamp
        ordered_at[future] += rng.integers(30, 400, int(future.sum())).astype("timedelta64[D]").astype("timedelta64[s]")
        for kind, mask in (
            ("unknown_customer", unknown),
            ("non_positive_amount", bad_amount),
            ("future_timestamp", future),
        ):
            self.defects["orders"][kind] += int(mask.sum())
        # A returned order is first delivered as completed, then again when its status changes.
        first_status = np.where(status == "returned", "completed", status)
        orders = _rows(
            count,
            order_id=order_ids,
            customer_id=customer,
            ordered_at=ordered_at,
            status=first_status,
            amount=amount,
            currency=self.currency[buyers],
            channel=rng.choice(np.array(["web", "app", "store"]), count, p=[0.6, 0.3, 0.1]),
            updated_at=ordered_at,
        )
        self.deliver("orders", day, orders)
        returned = np.flatnonzero(status == "returned")
        if len(returned):
            later = rng.integers(5, 30, len(returned))
            changed = _take(orders, returned)
            changed["status"] = np.full(len(returned), "returned")
            changed["updated_at"] = ordered_at[returned] + (later * 86_400).astype("timedelta64[s]")
            self.writer.add("orders", day + later, changed)
        self.deliver(
            "order_items",
            day,
            _rows(
                len(line_owner),
                order_id=order_ids[line_owner],
                line_number=np.arange(len(line_owner)) - np.searchsorted(line_owner, line_owner) + 1,
                product_id=product + 1,
                quantity=quantity,
                unit_price=unit_price,
            ),
        )
        # The email tool attributes orders placed within a week of a click to the campaign.
        converted = buyers[self.clicked_until[buyers] >= day]
        if len(converted):
            self._events(day, converted, "conversion", revenue=amount[np.isin(buyers, converted)] / self.fx[converted])
        return buyers

    def _lines(self, buyers: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each order's lines: which order (index into ``buyers``), product and quantity. The lines'
        count, target prices and quantities come from ``rng``, their products from the product stream."""
        items = 1 + rng.poisson(ITEMS_PER_ORDER_EXTRA, len(buyers))
        line_owner = np.repeat(np.arange(len(buyers)), items)
        target = (self.order_value[buyers] / items)[line_owner] * rng.lognormal(0, LINE_PRICE_SPREAD, len(line_owner))
        product = self._line_products(buyers, items, target)
        return line_owner, product, 1 + rng.poisson(0.2, len(line_owner))

    def _sessions(self, day: int, buyers: np.ndarray) -> None:
        rng = self.rng
        browse = np.minimum(self._purchase_probability(day) * 1.2 + 0.002 * (self.state < CHURNED), 0.9)
        visitors = np.union1d(buyers, np.flatnonzero(rng.random(self.n) < browse))
        count = len(visitors)
        self.writer.add(
            "web_sessions",
            day,
            _rows(
                count,
                session_id=self.ids("web_sessions", count),
                customer_id=self.customer_id[visitors],
                started_at=self.timestamps(day, count),
                duration_seconds=np.round(rng.lognormal(np.log(240), 0.8, count)).astype(np.int64),
                pages_viewed=1 + rng.poisson(4, count),
                device=rng.choice(np.array(["desktop", "mobile", "tablet"]), count, p=[0.45, 0.45, 0.1]),
            ),
        )

    def _tickets(self, day: int, buyers: np.ndarray) -> None:
        rng = self.rng
        chance = np.where(self.state < CHURNED, 0.0008, 0.0)
        chance[buyers] += 0.04
        who = np.flatnonzero(rng.random(self.n) < chance)
        count = len(who)
        if not count:
            return
        priority = rng.choice(np.array(["low", "normal", "high"]), count, p=[0.3, 0.55, 0.15])
        mean_hours = np.select([priority == "high", priority == "normal"], [8.0, 30.0], 60.0)
        service_quality = rng.random(count)
        hours = rng.exponential(mean_hours * (0.5 + 2 * (1 - service_quality)))
        created = self.timestamps(day, count)
        resolved = created + (hours * 3600).astype("timedelta64[s]")
        rated = rng.random(count) < 0.5
        experience = 0.5 * self.satisfaction[who] + 0.5 * service_quality - 0.3 * (hours > 72)
        csat = np.clip(np.round(1 + 4 * experience + rng.normal(0, 0.6, count)), 1, 5).astype(np.int64)
        bad = (hours > 72) | (rated & (csat <= 2))
        # Bad experiences lower satisfaction, which raises the chance to lapse and churn.
        self.satisfaction[who[bad]] = np.maximum(self.satisfaction[who[bad]] - 0.08, 0.0)
        category = rng.choice(TICKET_CATEGORIES, count)
        angry = np.where(bad, rng.choice(NEGATIVE_TEXT, count), "")
        description = np.char.add(np.char.add(np.array([TICKET_TEXT[c] for c in category]), " "), angry)
        self.deliver(
            "tickets",
            day,
            _rows(
                count,
                ticket_id=self.ids("tickets", count),
                customer_id=self.customer_id[who],
                created_at=created,
                resolved_at=resolved,
                channel=rng.choice(np.array(["email", "phone", "chat"]), count),
                category=category,
                priority=priority,
                description=np.char.strip(description),
                csat=np.where(rated, csat, np.nan),
            ),
        )

    def _surveys(self, day: int) -> None:
        rng = self.rng
        who = np.flatnonzero((self.state < CHURNED) & (rng.random(self.n) < SURVEY_DAILY_ANSWER))
        count = len(who)
        if not count:
            return
        sat = self.satisfaction[who]
        nps = np.clip(np.round(10 * sat + rng.normal(0, NPS_NOISE, count)), 0, 10).astype(np.int64)
        csat = np.clip(np.round(1 + 4 * sat + rng.normal(0, CSAT_NOISE, count)), 1, 5).astype(np.int64)
        tone = np.select([nps >= 9, nps >= 7], [0, 1], 2)
        texts = np.stack(
            [rng.choice(POSITIVE_TEXT, count), rng.choice(NEUTRAL_TEXT, count), rng.choice(NEGATIVE_TEXT, count)]
        )
        comment = np.where(rng.random(count) < 0.6, texts[tone, np.arange(count)], "")
        self.deliver(
            "surveys",
            day,
            _rows(
                count,
                response_id=self.ids("surveys", count),
                customer_id=self.customer_id[who],
                responded_at=self.timestamps(day, count),
                nps=nps,
                csat=csat,
                comment=comment,
            ),
        )

    def _campaign(self, day: int) -> None:
        rng = self.rng
        campaign_id = int(self.ids("campaigns", 1)[0])
        eligible = np.flatnonzero(
            (self.state < NOT_YET)
            & (self.state != CHURNED)
            & self.consent
            & ~self.unsubscribed
            & (rng.random(self.n) < 0.3)
        )
        group = rng.choice(3, len(eligible), p=[0.1, 0.45, 0.45])  # 0 control, 1 A, 2 B
        self.writer.add(
            "campaigns",
            day,
            _rows(
                3,
                campaign_id=campaign_id,
                variant=np.array(["A", "B", "control"]),
                campaign_name=f"Newsletter {campaign_id:03d}",
                channel="email",
                sent_on=(self.config.start_date + timedelta(days=day)).isoformat(),
                subject=np.array([f"New arrivals #{campaign_id}", f"Just for you: offer #{campaign_id}", ""]),
            ),
        )
        self.campaign_of[eligible] = campaign_id
        self.variant_of[eligible] = group
        self._events(day, eligible[group == 0], "holdout")
        treated = eligible[group != 0]
        self._events(day, treated, "send")
        self.fatigue[treated] += 1
        opened = treated[
            rng.random(len(treated)) < 0.5 * self.email_affinity[treated] * np.exp(-0.3 * self.fatigue[treated])
        ]
        self._events(day, opened, "open")
        clicked = opened[rng.random(len(opened)) < 0.25]
        self._events(day, clicked, "click")
        self.boost_until[treated] = day + CAMPAIGN_EFFECT_DAYS
        self.boost_lift[treated] = np.where(self.variant_of[treated] == 1, CAMPAIGN_LIFT["A"], CAMPAIGN_LIFT["B"])
        self.clicked_until[clicked] = day + CAMPAIGN_EFFECT_DAYS
        quits = treated[rng.random(len(treated)) < 0.002 * (1 + self.fatigue[treated])]
        self._events(day, quits, "unsubscribe")
        self.unsubscribed[quits] = True
        self.changed_today = quits

    def _events(self, day: int, who: np.ndarray, event_type: str, revenue: np.ndarray | None = None) -> None:
        count = len(who)
        if not count:
            return
        self.deliver(
            "marketing_events",
            day,
            _rows(
                count,
                event_id=self.ids("marketing_events", count),
                campaign_id=self.campaign_of[who],
                variant=np.array(["control", "A", "B"])[self.variant_of[who]],
                customer_id=self.customer_id[who],
                event_type=event_type,
                event_at=self.timestamps(day, count),
                revenue=np.round(revenue, 2) if revenue is not None else np.nan,
            ),
        )

    def _customer_changes(self, day: int) -> None:
        """Records change (consent withdrawn, moved): the master delivers them again."""
        rng = self.rng
        moved = np.flatnonzero((self.state < NOT_YET) & (self.signup_day < day) & (rng.random(self.n) < 0.0003))
        changed = np.union1d(moved, self.changed_today)
        self.changed_today = np.array([], dtype=np.int64)
        if len(changed):
            self.deliver("customers", day, self._master_rows(changed, day))

    def _write_truth(self) -> dict[str, object]:
        config = self.config
        lapse, churn, back = self.rates_at_end
        # The truth's window follows the last delivered day: the shift's factor of that time holds in it.
        completed_rate = self.purchase_rate * COMPLETED_SHARE * config.purchase_factor(config.days)
        probability = _no_completed_order_probability(
            self.state_at_end, lapse, churn, back, completed_rate, config.churn_window_days
        )
        expected_orders = _expected_completed_orders(
            self.state_at_end, lapse, churn, back, completed_rate, config.churn_window_days
        )
        spend, value = self.spend_per_order_value
        known = self.signup_day < config.days
        truth = pd.DataFrame(
            {
                "customer_id": self.customer_id,
                "person_id": self.person_id,
                "duplicate_customer_id": pd.Series(self.duplicate_id, dtype="Int64").mask(self.duplicate_id < 0),
                "segment": self.segment_names[self.segment],
                "satisfaction": self.satisfaction,
                "true_satisfied_probability": satisfied_probability(self.satisfaction),
                "state_at_end": np.array(["active", "lapsed", "churned", "not_yet"])[self.state_at_end],
                "true_churn_probability": probability,
                "churned": self.window_completed == 0,
                "future_spend": np.round(self.window_spend, 2),
                "future_orders": self.window_completed,
                # The reference for lifetime value: expected completed orders in the window from the
                # state on the last day, times the latent order value in EUR per order.
                "true_expected_orders": expected_orders,
                "true_expected_spend": expected_orders * self.order_value * (spend / max(value, 1e-9)),
                "order_value": self.order_value,
                **{f"affinity_{name}": self.category_affinity[:, c] for c, name in enumerate(CATEGORIES)},
            }
        )[known]
        self.truth_dir.mkdir(parents=True, exist_ok=True)
        truth.to_parquet(self.truth_dir / "customers.parquet", index=False)
        self._write_product_truth(known)
        manifest = {
            "config": {
                **asdict(config),
                "end_date": config.end_date.isoformat(),
                "shift_date": config.shift_date.isoformat() if config.shift_date else None,
            },
            "rows": dict(sorted(self.writer.rows.items())),
            "defects": {source: dict(sorted(kinds.items())) for source, kinds in sorted(self.defects.items())},
        }
        (self.truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest

    def _write_product_truth(self, known: np.ndarray) -> None:
        """The catalogue as the simulation chooses from it, and what each customer buys in the window."""
        pd.DataFrame(
            {
                "product_id": np.arange(1, len(self.product_price) + 1),
                "category": np.array(CATEGORIES)[self.category_index],
                "price_eur": self.product_price,
                "companion_product_id": self.companion + 1,
            }
        ).to_parquet(self.truth_dir / PRODUCTS_TRUTH_FILE, index=False)
        empty = (np.array([], dtype=np.int64),) * 3
        owners, products, quantities = (np.concatenate(part) for part in zip(*self.window_lines, empty, strict=True))
        bought = pd.DataFrame(
            {"customer_id": self.customer_id[owners], "product_id": products + 1, "quantity": quantities}
        )[known[owners]]
        bought.groupby(["customer_id", "product_id"], as_index=False)["quantity"].sum().to_parquet(
            self.truth_dir / WINDOW_PURCHASES_FILE, index=False
        )


PRODUCTS_TRUTH_FILE = "products.parquet"
WINDOW_PURCHASES_FILE = "window_purchases.parquet"
NPS_NOISE, CSAT_NOISE = 1.5, 0.7
# About a third of the customers answer a survey per quarter (relationship and post-service surveys
# together): enough answers for the satisfaction model's preflight at the 2,000-customer demo.
SURVEY_DAILY_ANSWER = 0.004


def satisfied_probability(satisfaction: np.ndarray) -> np.ndarray:
    """P(NPS promoter or CSAT >= 4) on a survey answer, from the survey model in _surveys."""
    # Imported here: scipy.stats costs every `crm` command a second of start-up (the CLI imports
    # this module for its defect kinds).
    from scipy.stats import norm

    promoter = norm.sf((8.5 - 10 * satisfaction) / NPS_NOISE)
    happy = norm.sf((2.5 - 4 * satisfaction) / CSAT_NOISE)
    return 1 - (1 - promoter) * (1 - happy)


def _no_completed_order_probability(
    state: np.ndarray, lapse: np.ndarray, churn: np.ndarray, back: np.ndarray, daily_buy: np.ndarray, window: int
) -> np.ndarray:
    """Exact P(no completed order in the next ``window`` days) for the daily chain of _step_states.

    Each day the state moves first (active → churned/lapsed, lapsed → churned/active), then the
    customer buys with the new state's chance. u[s] is the chance of no order over the days left
    from state s; churned customers never buy, so u[churned] = 1.
    """
    buy_active, buy_lapsed = daily_buy, daily_buy * LAPSED_PURCHASE_FACTOR
    u_active = np.ones_like(daily_buy)
    u_lapsed = np.ones_like(daily_buy)
    for _ in range(window):
        next_active = (
            churn * 1.0 + lapse * (1 - buy_lapsed) * u_lapsed + (1 - churn - lapse) * (1 - buy_active) * u_active
        )
        next_lapsed = (
            churn * 1.0 + back * (1 - buy_active) * u_active + (1 - churn - back) * (1 - buy_lapsed) * u_lapsed
        )
        u_active, u_lapsed = next_active, next_lapsed
    return np.select([state == ACTIVE, state == LAPSED], [u_active, u_lapsed], 1.0)


def _expected_completed_orders(
    state: np.ndarray, lapse: np.ndarray, churn: np.ndarray, back: np.ndarray, daily_buy: np.ndarray, window: int
) -> np.ndarray:
    """Expected completed orders in the next ``window`` days for the daily chain of _step_states: the
    chance of being active or lapsed each day (the state moves first), times that state's chance to buy."""
    active = (state == ACTIVE).astype(float)
    lapsed = (state == LAPSED).astype(float)
    orders = np.zeros_like(daily_buy)
    for _ in range(window):
        active, lapsed = (
            active * (1 - churn - lapse) + lapsed * back,
            active * lapse + lapsed * (1 - churn - back),
        )
        orders += active * daily_buy + lapsed * daily_buy * LAPSED_PURCHASE_FACTOR
    return orders
