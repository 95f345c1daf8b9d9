"""The landing contract: every source the platform accepts, its file format, columns, key and meaning.

This module is the single source of truth: the loader checks deliveries against it, the
generator writes through it, and docs/sources.md is rendered from it (`crm contract-docs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the type the value must parse as in staging
    description: str
    pii: bool = False


@dataclass(frozen=True)
class SourceContract:
    name: str
    system: str
    file_format: str  # csv, parquet or jsonl
    key: tuple[str, ...]
    required: bool
    description: str
    columns: tuple[Column, ...]
    # Daily row counts are stable enough to learn bounds from recent days (the raw quality gate);
    # sources that arrive in bursts (campaign sends, catalog changes) are not bounded.
    steady_volume: bool = True

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.file_format}"

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def pii(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.pii)


def _columns(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


CONTRACTS: dict[str, SourceContract] = {
    contract.name: contract
    for contract in (
        SourceContract(
            name="customers",
            system="CRM customer master",
            file_format="csv",
            key=("customer_id",),
            required=True,
            description="One row per customer record; a customer is delivered again whenever its record changes "
            "(the most recent `updated_at` wins). The first partition holds every existing customer.",
            columns=_columns(
                ("customer_id", "integer", "The CRM's customer id."),
                ("first_name", "text", "Given name.", True),
                ("last_name", "text", "Family name.", True),
                ("email", "text", "Email address.", True),
                ("phone", "text", "Phone number, international format.", True),
                ("birth_date", "date", "Date of birth, YYYY-MM-DD.", True),
                ("gender", "text", "f, m or d."),
                ("city", "text", "City of the address."),
                ("region", "text", "Region or state of the address."),
                ("country", "text", "ISO 3166 alpha-2 country code."),
                ("signup_date", "date", "The day the customer signed up, YYYY-MM-DD."),
                ("acquisition_channel", "text", "organic, paid_search, social, referral or email."),
                ("email_consent", "boolean", "Agreed to email marketing: true or false."),
                ("updated_at", "timestamp", "When the CRM last changed the record, ISO 8601."),
            ),
        ),
        SourceContract(
            name="orders",
            system="E-commerce",
            file_format="parquet",
            key=("order_id",),
            required=True,
            description="One row per order. An order may be delivered again when its status changes.",
            columns=_columns(
                ("order_id", "integer", "The order system's order id."),
                ("customer_id", "integer", "The CRM customer id of the buyer."),
                ("ordered_at", "timestamp", "When the order was placed."),
                ("status", "text", "completed, cancelled or returned."),
                ("amount", "decimal", "Order total in `currency`, taxes included; 0 for a free order."),
                (
                    "currency",
                    "text",
                    "ISO 4217 code, one of the seed `currency_rates` (EUR, CHF, GBP and USD as shipped).",
                ),
                ("channel", "text", "web, app or store."),
                ("updated_at", "timestamp", "When the order record last changed."),
            ),
        ),
        SourceContract(
            name="order_items",
            system="E-commerce",
            file_format="parquet",
            key=("order_id", "line_number"),
            required=False,
            description="One row per order line.",
            columns=_columns(
                ("order_id", "integer", "The order the line belongs to."),
                ("line_number", "integer", "1-based line number within the order."),
                ("product_id", "integer", "The product sold (see products)."),
                ("quantity", "integer", "Units sold."),
                ("unit_price", "decimal", "Price per unit in the order's currency."),
            ),
        ),
        SourceContract(
            name="products",
            system="E-commerce",
            file_format="csv",
            key=("product_id",),
            required=False,
            steady_volume=False,
            description="The product catalog; a product is delivered again when it changes.",
            columns=_columns(
                ("product_id", "integer", "The catalog's product id."),
                ("product_name", "text", "Display name."),
                ("category", "text", "Product category."),
                ("list_price", "decimal", "List price in EUR."),
                ("updated_at", "timestamp", "When the catalog entry last changed."),
            ),
        ),
        SourceContract(
            name="tickets",
            system="Customer service",
            file_format="jsonl",
            key=("ticket_id",),
            required=False,
            description="One JSON object per line and ticket; a ticket is delivered again when it is resolved "
            "or rated.",
            columns=_columns(
                ("ticket_id", "integer", "The service desk's ticket id."),
                ("customer_id", "integer", "The CRM customer id."),
                ("created_at", "timestamp", "When the ticket was opened."),
                ("resolved_at", "timestamp", "When it was resolved; null while open."),
                ("channel", "text", "email, phone or chat."),
                ("category", "text", "delivery, billing, product, returns or account."),
                ("priority", "text", "low, normal or high."),
                ("description", "text", "The customer's free-text description."),
                ("csat", "integer", "1-5 satisfaction with the resolution; null when not rated."),
            ),
        ),
        SourceContract(
            name="surveys",
            system="Surveys",
            file_format="csv",
            key=("response_id",),
            required=False,
            description="One row per survey response.",
            columns=_columns(
                ("response_id", "integer", "The survey tool's response id."),
                ("customer_id", "integer", "The CRM customer id."),
                ("responded_at", "timestamp", "When the customer answered."),
                ("nps", "integer", "Likelihood to recommend, 0-10."),
                ("csat", "integer", "Overall satisfaction, 1-5."),
                ("comment", "text", "Free-text comment; may be empty."),
            ),
        ),
        SourceContract(
            name="campaigns",
            system="Marketing",
            file_format="csv",
            key=("campaign_id", "variant"),
            required=False,
            steady_volume=False,
            description="One row per campaign and variant, delivered on the send day. The variant `control` is "
            "the randomised hold-out group, which receives nothing.",
            columns=_columns(
                ("campaign_id", "integer", "The marketing tool's campaign id."),
                ("variant", "text", "A, B or control."),
                ("campaign_name", "text", "Campaign name."),
                ("channel", "text", "email."),
                ("sent_on", "date", "The send day, YYYY-MM-DD."),
                ("subject", "text", "Subject line of the variant; empty for control."),
            ),
        ),
        SourceContract(
            name="marketing_events",
            system="Marketing",
            file_format="jsonl",
            key=("event_id",),
            required=False,
            steady_volume=False,
            description="One JSON object per line and event: `holdout` (assigned to the control group), `send`, "
            "`open`, `click`, `unsubscribe`, `conversion` (an order attributed to a click, with revenue).",
            columns=_columns(
                ("event_id", "integer", "The marketing tool's event id."),
                ("campaign_id", "integer", "The campaign."),
                ("variant", "text", "A, B or control."),
                ("customer_id", "integer", "The CRM customer id."),
                ("event_type", "text", "holdout, send, open, click, unsubscribe or conversion."),
                ("event_at", "timestamp", "When the event happened."),
                ("revenue", "decimal", "Attributed revenue in EUR for conversions; null otherwise."),
            ),
        ),
        SourceContract(
            name="web_sessions",
            system="Web and app analytics",
            file_format="parquet",
            key=("session_id",),
            required=False,
            description="One row per identified (logged-in) web or app session.",
            columns=_columns(
                ("session_id", "integer", "The analytics tool's session id."),
                ("customer_id", "integer", "The CRM customer id."),
                ("started_at", "timestamp", "Session start."),
                ("duration_seconds", "integer", "Session length in seconds."),
                ("pages_viewed", "integer", "Pages or screens viewed."),
                ("device", "text", "desktop, mobile or tablet."),
            ),
        ),
    )
}

PII_COLUMNS = frozenset(name for contract in CONTRACTS.values() for name in contract.pii)


DOCS_START = "<!-- contract:start (rendered by `crm contract-docs` from crm/contracts.py; do not edit) -->"
DOCS_END = "<!-- contract:end -->"


def sync_docs(path: Path, write: bool) -> bool:
    """Render the contract between the markers of ``path``; return whether it was already current."""
    text = path.read_text()
    head, _, rest = text.partition(DOCS_START)
    _, _, tail = rest.partition(DOCS_END)
    rendered = f"{head}{DOCS_START}\n\n{render_markdown()}\n{DOCS_END}{tail}"
    if write and rendered != text:
        path.write_text(rendered)
    return rendered == text


def render_markdown() -> str:
    """The per-source part of docs/sources.md."""
    parts = []
    for contract in CONTRACTS.values():
        parts += [
            f"## {contract.name} ({contract.system}, {'required' if contract.required else 'optional'})",
            "",
            f"`{contract.name}/dt=YYYY-MM-DD/{contract.file_name}`, key `{', '.join(contract.key)}`. "
            f"{contract.description}"
            + (
                " Each day's row count must stay within bounds learned from the previous days."
                if contract.steady_volume
                else " Arrives in bursts: daily row counts are not bounded."
            ),
            "",
            "| Column | Type | Meaning |",
            "| --- | --- | --- |",
            *(f"| `{c.name}` | {c.type} | {c.description}{' **PII**' if c.pii else ''} |" for c in contract.columns),
            "",
        ]
    return "\n".join(parts)
