"""PII stays in the restricted raw and staging schemas: the BI copy, MLflow and the logs never see an
email or phone of a generated customer, published marts carry keyed hashes and masked values, and
customers without email consent never reach a campaign audience.

The scan (conftest's PiiScan) extracts email- and phone-like tokens with two regular expressions and
looks each one up in the set of generated values (normalised), so it takes seconds. The homes the
other tests copy and run again are scanned there (test_end_to_end, test_local_ui).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from crm import data_docs
from crm.contact_rules import EMAIL_IN_TEXT, PHONE_IN_TEXT
from crm.pipeline import PUBLISHED_TABLES
from crm.settings import CHECKOUT, Settings, hmac_pads
from crm.warehouse import PublicationRefused, publish_copy


@pytest.fixture(scope="module")
def privacy_run(pipeline_run, pii_scan) -> tuple[Settings, subprocess.CompletedProcess[str], object]:
    settings, completed = pipeline_run
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    pii = pii_scan(settings.landing_dir)
    assert len(pii.emails) > 100 and len(pii.phone_digits) > 100
    return settings, completed, pii


def test_raw_pii_stays_in_the_restricted_schemas(privacy_run):
    """The scan is not vacuous: the same lookup finds the generated PII in raw and staging."""
    settings, _, pii = privacy_run
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in ("raw.customers", "staging.stg_crm__customers"):
            schema, name = table.split(".")
            leaks, _ = pii.scan(((column, value) for column, value in pii.text_values(con, schema, name)), "-")
            assert {"email", "phone"} <= set(leaks), table
            assert len(leaks["email"]) > 0.9 * len(pii.emails), table


def test_bi_copy_holds_no_email_or_phone(privacy_run):
    settings, _, pii = privacy_run
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        tables = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
        assert {f"{schema}.{name}" for schema, name in tables} == set(PUBLISHED_TABLES)
        texts = [
            (f"bi {schema}.{name}.{column}", value)
            for schema, name in tables
            for column, value in pii.text_values(con, schema, name)
        ]
    leaks, scanned = pii.scan(texts, settings.pii_hash_key())
    assert scanned > 1000
    assert not leaks, pii.report(leaks)


def test_mlflow_store_and_artifacts_hold_no_email_or_phone(privacy_run):
    settings, _, pii = privacy_run
    store = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///"))
    artifacts = list(pii.files(settings.mlflow_artifacts_dir))
    assert any(path.name == "input_example.json" for path in artifacts)
    texts = [*pii.sqlite_texts(store), *(text for path in artifacts for text in pii.file_texts(path))]
    leaks, scanned = pii.scan(texts, settings.pii_hash_key())
    assert scanned > 100
    assert not leaks, pii.report(leaks)


def test_run_logs_hold_no_email_or_phone(privacy_run):
    """The run's own output, Airflow's task logs, dbt's logs and artifacts, the Data Docs (their pages and
    the validation results kept for them) and the summary."""
    settings, completed, pii = privacy_run
    validations = data_docs.validations_dir(settings)
    files = list(
        pii.files(settings.airflow_home / "logs", settings.dbt_artifacts_dir, settings.data_docs_dir, validations)
    )
    assert any(path.suffix == ".log" for path in files)
    assert any(path.is_relative_to(validations) and path.suffix == ".json" for path in files)
    texts = [
        ("stdout", completed.stdout),
        ("stderr", completed.stderr),
        ("run summary", settings.run_summary_path.read_text()),
        *(text for path in files for text in pii.file_texts(path)),
    ]
    leaks, _ = pii.scan(texts, settings.pii_hash_key())
    assert not leaks, pii.report(leaks)


def test_marts_carry_keyed_hashes_and_masked_values(privacy_run):
    settings, _, _ = privacy_run
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("""
            select customers.email, customers.phone, dim.email_hash, dim.phone_hash, dim.email_masked, dim.phone_masked
            from marts.dim_customers as dim
            inner join staging.int_customers_resolved as customers using (customer_key)
            where customers.email is not null and customers.phone is not null""").fetchall()
    assert len(rows) > 100
    for email, phone, email_hash, phone_hash, email_masked, phone_masked in rows:
        # The macro's HMAC from DuckDB's sha256 equals the Python one with the same key.
        assert email_hash == settings.hash_pii(email) and phone_hash == settings.hash_pii(phone)
        assert email_masked == f"{email[0]}***{email[email.index('@') :]}" and phone_masked == f"***{phone[-2:]}"


def test_campaign_audiences_leave_out_customers_without_consent(privacy_run):
    settings, _, _ = privacy_run
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        flags = dict(con.execute("select customer_key, is_email_marketable from marts.customer_360").fetchall())
        consent = dict(con.execute("select customer_key, has_email_consent from marts.customer_360").fetchall())
        audience = {row[0] for row in con.execute("select customer_key from marts.campaign_audiences").fetchall()}
    without_consent = {key for key, agrees in consent.items() if not agrees}
    assert without_consent and audience
    assert not audience & without_consent
    assert audience == {key for key, marketable in flags.items() if marketable}


def test_the_hash_key_never_reaches_compiled_sql(privacy_run):
    settings, _, pii = privacy_run
    secret = settings.pii_hash_key()
    files = list(pii.files(settings.dbt_artifacts_dir))
    assert any(path.suffix == ".sql" for path in files)
    assert not [path for path in files if secret in path.read_bytes().decode("utf-8", errors="ignore")]


def test_hmac_pads_give_python_hmac():
    inner, outer = hmac_pads("k" * 100)  # longer than a block: hashed first, as RFC 2104 says
    with duckdb.connect() as con:
        con.execute("set variable pii_hmac_inner = ?", [inner])
        con.execute("set variable pii_hmac_outer = ?", [outer])
        digest = con.execute(
            "select sha256(getvariable('pii_hmac_outer') || unhex(sha256("
            "getvariable('pii_hmac_inner') || encode('jane.doe@example.com'))))"
        ).fetchone()[0]
    assert digest == hmac.new(b"k" * 100, b"jane.doe@example.com", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("Please write to Jane.Doe@Example.org about my order", "an email address"),
        ("call me on +49 30 1234567 tomorrow", "a phone number"),
        ("0049 (30) 123-4567", "a phone number"),
    ],
)
def test_publication_refuses_text_with_contact_details(tmp_path: Path, value: str, kind: str):
    settings = Settings.from_env(home=tmp_path)
    settings.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.fct_feedback as select 1 as id, 'fine' as note")
    publish_copy(settings, ["marts.fct_feedback"])
    before = settings.bi_warehouse_path.read_bytes()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("insert into marts.fct_feedback values (2, ?)", [value])
    with pytest.raises(PublicationRefused) as refused:
        publish_copy(settings, ["marts.fct_feedback"])
    message = str(refused.value)
    assert "marts.fct_feedback" in message and "column note" in message and kind in message
    assert value not in message and "1234567" not in message and "@" not in message
    assert settings.bi_warehouse_path.read_bytes() == before  # BI still reads the previous copy


def test_the_contact_rules_find_addresses_beside_long_runs_of_their_characters():
    """The rules are bounded as addresses are: an address at the end of a long run of the characters an
    address may hold (a base64 blob in a ticket, say) is still found, and Python's re, a backtracking
    engine, scans such a run once instead of once per start position (unbounded, a 370,000-character
    run took minutes)."""
    email, phone = re.compile(EMAIL_IN_TEXT), re.compile(PHONE_IN_TEXT)
    blob = "QUJD" * 50_000 + "+/="
    assert email.findall(f"{blob} jane.doe+crm@example.co.uk {blob}") == ["jane.doe+crm@example.co.uk"]
    assert email.findall("QUJD" * 50_000 + "@example.org") == ["QUJD" * 16 + "@example.org"]  # its last 64 before the @
    assert phone.findall("1" * 100_000) != [] and phone.findall("call +49 (0)30 1234-5678") == ["+49 (0)30 1234-5678"]


def test_publication_passes_hashes_masks_dates_and_codes(tmp_path: Path):
    settings = Settings.from_env(home=tmp_path)
    settings.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema marts")
        con.execute("""create table marts.safe as select * from (values
            ('2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', 'a***@example.com', '***42',
             '2026-11-24', 'Newsletter 001', '545'),
            ('5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8', null, null,
             '2026-11-24 10:00:00', 'recency_days, orders_last_90d', '111')) as t(h, e, p, d, n, c)""")
    assert publish_copy(settings, ["marts.safe"]) == {"marts.safe": 2}


def test_dbt_profile_reads_every_credential_from_the_environment():
    profile = yaml.safe_load((CHECKOUT / "dbt_project" / "profiles.yml").read_text())
    output = profile["crm"]["outputs"]["duckdb"]
    assert output["path"] == "{{ env_var('CRM_WAREHOUSE_PATH') }}"
    plugin = next(plugin for plugin in output["plugins"] if plugin["module"] == "crm.dbt_pii")
    # The DBT_ENV_SECRET_ prefix makes dbt scrub the value from its logs; without it (Airflow's dbt
    # tasks) the plugin takes the key from the settings.
    assert plugin["config"]["pii_hash_key"] == "{{ env_var('DBT_ENV_SECRET_PII_HASH_KEY', '') }}"
    team = profile["crm"]["outputs"]["postgres"]
    assert team["password"] == "{{ env_var('DBT_ENV_SECRET_POSTGRES_PASSWORD', '') }}"
    assert all(str(value).startswith("{{ env_var(") for key, value in team.items() if key in ("host", "user", "dbname"))


def test_a_spark_thrift_servers_sessions_get_the_hash_pads_and_the_runtime_settings():
    """Through a Spark Thrift server (spark://host:port) dbt's server_side_parameters open each session,
    and the server applies only those named set:hiveconf:<setting> (checked against Spark 4.3's
    HiveThriftServer2: a plain spark.crm.pii_hmac_inner read as empty, and hash_pii refused to run).
    Every runtime setting a local session gets by its plain name reaches a server's session too."""
    profile = yaml.safe_load((CHECKOUT / "dbt_project" / "profiles.yml").read_text())
    parameters = profile["crm"]["outputs"]["spark"]["server_side_parameters"]
    for name in (
        "spark.crm.pii_hmac_inner",
        "spark.crm.pii_hmac_outer",
        "spark.sql.session.timeZone",
        "spark.sql.sources.partitionOverwriteMode",
        "spark.sql.hive.metastorePartitionPruning",
    ):
        assert parameters[f"set:hiveconf:{name}"] == parameters[name], name
    assert parameters["set:hiveconf:spark.crm.pii_hmac_inner"].startswith("{{ env_var('DBT_ENV_SECRET_")


def test_postgres_connections_get_the_hash_pads_not_the_key(tmp_path):
    """On PostgreSQL the pads reach dbt's connections as libpq session options; the key itself and
    the warehouse password travel only in variables dbt scrubs from its logs."""
    settings = Settings.from_env(
        home=tmp_path, warehouse_url="postgresql+psycopg://crm:s3cret@db.internal:5433/warehouse"
    )
    env = settings.dbt_env()
    inner, outer = hmac_pads(settings.pii_hash_key())
    assert env["PGOPTIONS"] == f"-c crm.pii_hmac_inner={inner.hex()} -c crm.pii_hmac_outer={outer.hex()}"
    assert settings.pii_hash_key() not in env["PGOPTIONS"]
    assert env["DBT_ENV_SECRET_POSTGRES_PASSWORD"] == "s3cret"
    assert "s3cret" not in repr(settings)  # settings are logged
    assert not any("s3cret" in value for name, value in env.items() if not name.startswith("DBT_ENV_SECRET_"))


def test_no_secret_is_committed():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert not [
        name
        for name in tracked
        if Path(name).name in (".env", "pii_hash_key")
        or name.startswith((".crm/", ".airflow/"))
        or name.endswith((".pem", ".key", ".p12"))
    ]
    private_key = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    offending = []
    for name in tracked:
        path = CHECKOUT / name
        if path.is_file() and path.stat().st_size < 2_000_000:
            if private_key.search(path.read_bytes().decode("utf-8", errors="ignore")):
                offending.append(name)
    assert not offending
    example = dict(
        line.split("=", 1)
        for line in (CHECKOUT / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert all(value in ("", "admin") or value.startswith("change-me") for value in example.values()), example
