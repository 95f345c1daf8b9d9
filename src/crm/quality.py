"""Great Expectations quality gates: validate a frame against a suite kept in expectations/suites.

An expectation's ``severity`` decides what a failure does: ``critical`` blocks (the gate raises
and nothing downstream runs), ``warning`` is logged and shown in Data Docs, which every pipeline
step that validates rebuilds. Failure messages name the suite, expectation, column, unexpected
count and sample ids; values of PII columns are never shown.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from crm import data_docs
from crm.contracts import CONTRACTS, PII_COLUMNS, SourceContract
from crm.settings import Settings

log = logging.getLogger(__name__)

BLOCKING = "critical"
SAMPLE_SIZE = 5


@dataclass(frozen=True)
class ExpectationFailure:
    suite: str
    expectation: str
    column: str | None
    severity: str
    unexpected_count: int | None
    sample_ids: list[dict[str, Any]] = field(default_factory=list)
    sample_values: list[Any] = field(default_factory=list)
    # What an aggregate expectation measured (a share, a mean, a row count); None for row-level ones.
    observed_value: Any = None

    @property
    def blocking(self) -> bool:
        return self.severity == BLOCKING

    def describe(self) -> str:
        parts = [f"suite {self.suite}", f"expectation {self.expectation}"]
        if self.column:
            parts.append(f"column {self.column}")
        if self.unexpected_count is not None:
            parts.append(f"{self.unexpected_count} unexpected")
        if self.observed_value is not None:
            parts.append(f"observed {self.observed_value}")
        if self.sample_ids:
            parts.append(f"sample ids {self.sample_ids}")
        if self.sample_values:
            parts.append(f"sample values {self.sample_values}")
        return ", ".join(parts)


class QualityGateFailed(RuntimeError):
    def __init__(self, failures: list[ExpectationFailure]):
        self.failures = failures
        lines = "\n".join(f"  - {failure.describe()}" for failure in failures)
        super().__init__(f"quality gate blocked the pipeline: {len(failures)} blocking expectation(s) failed:\n{lines}")


@dataclass(frozen=True)
class GateResult:
    suite: str
    rows: int
    evaluated: int
    failures: list[ExpectationFailure]

    @property
    def blocking(self) -> list[ExpectationFailure]:
        return [failure for failure in self.failures if failure.blocking]

    @property
    def warnings(self) -> list[ExpectationFailure]:
        return [failure for failure in self.failures if not failure.blocking]


def load_suite_definition(expectations_dir: Path, suite_name: str) -> dict[str, Any]:
    """The suite's JSON; a raw batch suite (``meta.landing_contract``) also gets the contract's expectations."""
    path = expectations_dir / "suites" / f"{suite_name}.json"
    try:
        definition = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"expectation suite {suite_name!r} not found at {path}") from None
    source = definition.get("meta", {}).get("landing_contract")
    if source:
        definition["expectations"] = contract_expectations(CONTRACTS[source]) + definition["expectations"]
    return definition


# Expectations about which columns the table has: a suite with one of them sees the whole frame.
TABLE_COLUMN_EXPECTATIONS = {
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
}


def suite_columns(definition: dict[str, Any]) -> set[str] | None:
    """The columns a suite's expectations read; None where one of them checks the table's columns or
    filters rows by a condition (which may read any column)."""
    columns: set[str] = set()
    for expectation in definition["expectations"]:
        kwargs = expectation.get("kwargs", {})
        if expectation["type"] in TABLE_COLUMN_EXPECTATIONS or kwargs.get("row_condition"):
            return None
        columns |= {kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs}
        columns |= set(kwargs.get("column_list") or ())
    return columns


# What a text cell must look like to count as the contract's type (CSV and JSON lines arrive as
# text; Parquet carries its types). Strict on layout, so a changed date format is caught.
TYPE_PATTERNS = {
    "integer": r"^\s*[+-]?\d+(\.0+)?\s*$",
    "decimal": r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "timestamp": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$",
    "boolean": r"^(true|false|TRUE|FALSE|True|False)$",
}
# A few bad records are quarantined by staging; a batch where this share breaks is refused.
BATCH_BROKEN_BELOW = 0.9


def contract_expectations(contract: SourceContract) -> list[dict[str, Any]]:
    """Expectations every raw batch of ``contract``'s source meets: its columns, keys and value types."""
    expectations: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": list(contract.column_names), "exact_match": False},
            "meta": {"from": "landing contract"},
            "severity": BLOCKING,
        },
        # Columns beyond the contract are kept in _extra, and reported: the sender changed its export.
        {
            "type": "expect_column_values_to_be_null",
            "kwargs": {"column": "_extra"},
            "meta": {"from": "landing contract", "defect": "schema_drift_extra_column"},
            "severity": "warning",
        },
    ]
    expectations += [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": key, "mostly": BATCH_BROKEN_BELOW},
            "meta": {"from": "landing contract"},
            "severity": BLOCKING,
        }
        for key in contract.key
    ]
    if contract.file_format != "parquet":
        expectations += [
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": column.name, "regex": TYPE_PATTERNS[column.type], "mostly": BATCH_BROKEN_BELOW},
                "meta": {"from": "landing contract", "contract_type": column.type},
                "severity": BLOCKING,
            }
            for column in contract.columns
            if column.type != "text"
        ]
    return expectations


class QualityGate:
    """One Great Expectations context per process (importing GX alone costs seconds), validating for
    the run about ``day``: its results join that run's Data Docs site (crm.data_docs). Without a day
    (validations outside a pipeline step), today's site."""

    def __init__(self, settings: Settings, day: date | None = None):
        self.settings = settings
        self.day = day or datetime.now(UTC).date()
        self._rendered: list[Any] = []  # this process's validation results and suites, for Data Docs
        # What this process's gates decided, in order (crm.gates.record_gate_results writes it down).
        self.results: list[GateResult] = []

    @cached_property
    def _context(self):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # Results on disk, named by the run's day: every step of the run adds its pages to one site.
        context.add_store(
            "run_validations",
            {
                "class_name": "ValidationResultsStore",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs.validations_dir(self.settings)),
                },
            },
        )
        context.validation_results_store_name = "run_validations"
        site = data_docs.site_dir(self.settings, self.day)
        site.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="local",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "site_section_builders": {"validations": {"run_name_filter": {"equals": self.day.isoformat()}}},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
            },
        )
        context.data_sources.add_pandas("warehouse")
        return context

    def validate(
        self,
        suite_name: str,
        frame: pd.DataFrame,
        id_columns: list[str],
        parameters: dict[str, Any] | None = None,
        raise_blocking: bool = True,
    ) -> GateResult:
        """Validate ``frame``; raise QualityGateFailed on any blocking failure, log warnings.

        ``parameters`` fill the suite's ``{"$PARAMETER": name}`` values (figures known only at run time).
        Great Expectations sees only the columns the suite reads and the ids: it copies the whole frame
        for every column expectation (to drop that column's nulls), so unread columns, text ones most,
        cost it seconds a suite at a million rows.
        """
        columns = suite_columns(self._definition(suite_name))
        if columns is not None:
            frame = frame[[name for name in frame.columns if name in columns or name in id_columns]]
        from great_expectations.core.run_identifier import RunIdentifier

        checkpoint = self._checkpoint(suite_name, tuple(id_columns))
        run = checkpoint.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            # Named by the run's day; the time tells a rerun's validations from the first run's.
            run_id=RunIdentifier(run_name=self.day.isoformat(), run_time=datetime.now(UTC)),
        )
        self._rendered += list(run.run_results)
        results = [result for validation in run.run_results.values() for result in validation.results]
        failures = [_failure(suite_name, result, id_columns) for result in results if not result.success]
        gate = GateResult(suite=suite_name, rows=len(frame), evaluated=len(results), failures=failures)
        self.results.append(gate)
        for warning in gate.warnings:
            log.warning("quality warning: %s", warning.describe())
        if gate.blocking:
            if raise_blocking:
                raise QualityGateFailed(gate.blocking)
            return gate
        log.info(
            "quality gate %s passed: %d expectations on %d rows (%d warnings)",
            suite_name,
            gate.evaluated,
            gate.rows,
            len(gate.warnings),
        )
        return gate

    # A gate lives as long as its process: caching on the instance is what is wanted here.
    @cache  # noqa: B019
    def _definition(self, suite_name: str) -> dict[str, Any]:
        return load_suite_definition(self.settings.expectations_dir, suite_name)

    @cache  # noqa: B019
    def _checkpoint(self, suite_name: str, id_columns: tuple[str, ...]):
        """The suite's checkpoint, built once per process from its JSON definition."""
        import great_expectations as gx

        asset = self._context.data_sources.get("warehouse").add_dataframe_asset(suite_name)
        # A copy: GX writes into the suite's meta (its version), and the cached definition stays as read.
        suite = self._context.suites.add(gx.ExpectationSuite(**copy.deepcopy(self._definition(suite_name))))
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        self._rendered.append(ExpectationSuiteIdentifier(name=suite_name))
        definition = self._context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{suite_name}_validation",
                data=asset.add_batch_definition_whole_dataframe(suite_name),
                suite=suite,
            )
        )
        return self._context.checkpoints.add(
            gx.Checkpoint(
                name=f"{suite_name}_checkpoint",
                validation_definitions=[definition],
                # SUMMARY keeps a sample of unexpected rows with their ids; COMPLETE would list every one,
                # which costs more than the validation itself on a million rows.
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": list(id_columns),
                    "partial_unexpected_count": SAMPLE_SIZE,
                },
            )
        )

    @property
    def data_docs_index(self) -> Path:
        return data_docs.site_dir(self.settings, self.day) / "index.html"

    def build_data_docs(self) -> Path | None:
        """Render this process's validations, passed or failed, into the run's Data Docs site, and
        index the site with the run's earlier steps' pages; None if there were none.

        Built once per pipeline step rather than per validation: rendering costs several times the
        validation itself. Only this process's pages are rendered; the index lists them all.
        """
        if "_context" not in self.__dict__:
            return None
        self._context.build_data_docs(site_names=["local"], resource_identifiers=self._rendered)
        site = data_docs.site_dir(self.settings, self.day)
        data_docs.make_offline(site, data_docs.assets_dir(self.settings))
        data_docs.write_runs_index(self.settings.data_docs_dir)
        if self.settings.data_docs_url:
            from crm import storage

            # GX 1.x writes sites to local folders only: the built site is copied to the store.
            storage.upload(self.settings.data_docs_dir, self.settings.data_docs_url)
        return self.data_docs_index


def _failure(suite_name: str, result: Any, id_columns: list[str]) -> ExpectationFailure:
    config = result.expectation_config
    kwargs = config.kwargs
    column = (
        kwargs.get("column")
        or ",".join(kwargs.get("column_list") or [kwargs[key] for key in ("column_A", "column_B") if kwargs.get(key)])
        or None
    )
    details = result.result or {}
    error = (result.exception_info or {}).get("exception_message")
    revealing = column is not None and not (set(column.split(",")) & PII_COLUMNS)
    sample_ids = [
        {key: _plain(row.get(key)) for key in id_columns}
        for row in (details.get("partial_unexpected_index_list") or [])[:SAMPLE_SIZE]
        if isinstance(row, dict)
    ]
    return ExpectationFailure(
        suite=suite_name,
        expectation=config.type + (f" (error: {error})" if error else ""),
        column=column,
        severity=str(getattr(config.severity, "value", config.severity)),
        unexpected_count=details.get("unexpected_count"),
        sample_ids=sample_ids,
        sample_values=[_plain(value) for value in (details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]]
        if revealing
        else [],
        observed_value=_plain(details.get("observed_value"))
        if revealing and not isinstance(details.get("observed_value"), (list, dict))
        else None,
    )


def _plain(value: Any) -> Any:
    """JSON-friendly scalars for messages (numpy and pandas scalars become Python ones)."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
