"""The ``crm`` command: the pipeline's steps one by one, or the whole run through Airflow."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from dataclasses import fields, replace
from datetime import UTC, date, datetime
from pathlib import Path

from crm import pipeline
from crm.generate import DefectRates
from crm.settings import CHECKOUT, Settings

PIPELINE_DAG = "crm_pipeline"
# Under the home: the tracebacks of failed commands, whose console output is one line per problem.
FAILURE_LOG = Path("logs") / "crm.log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write a synthetic multi-source dataset into the landing folder")
    gen.add_argument("--customers", type=int, default=2_000)
    gen.add_argument("--days", type=int, default=730, help="days of history")
    gen.add_argument("--end-date", type=date.fromisoformat, default=None, help="last delivered day (YYYY-MM-DD)")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--out", type=Path, default=None, help="landing folder (default: the configured one)")
    gen.add_argument("--truth", type=Path, default=None, help="ground-truth folder (default: the configured one)")
    gen.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="override a defect rate, e.g. invalid_email=0.02 or renamed_column_batches=1 "
        f"(kinds: {', '.join(f.name for f in fields(DefectRates))})",
    )
    gen.add_argument("--no-defects", action="store_true", help="clean data: every defect rate 0")
    gen.add_argument(
        "--shift-date",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="a change of behaviour from this day on (for monitoring): purchases times --shift-purchase-factor",
    )
    gen.add_argument("--shift-purchase-factor", type=float, default=1.0, help="e.g. 0.6: a price rise (default 1)")

    commands.add_parser(
        "copy-raw",
        help="copy the raw layer of the DuckDB warehouse (CRM_WAREHOUSE_PATH) into PostgreSQL (CRM_WAREHOUSE_URL)",
    )
    docs = commands.add_parser("contract-docs", help="render the landing contract into docs/sources.md")
    docs.add_argument("--check", action="store_true", help="only check that docs/sources.md is current")

    for name, help_text in (
        ("load", "load new landing partitions into the raw schema"),
        ("gate", "quality gate on the marts"),
        ("publish", "rebuild the marts that read the scores and replace the BI copy"),
        ("summary", "print and write the run summary"),
        ("evaluate", "compare the latest scores with the generator's ground truth"),
    ):
        commands.add_parser(name, help=help_text)
    commands.add_parser("build", help="dbt build of the warehouse (the features at the scoring date)").add_argument(
        "--training",
        action="store_true",
        help="build the training data instead: the features at the training and validation dates, and the labels",
    )
    commands.add_parser("train", help="train, register and promote a model").add_argument(
        "--model", choices=pipeline.MODELS, default="churn"
    )
    commands.add_parser("score", help="score every customer with each model's champion").add_argument(
        "--model", choices=pipeline.MODELS, action="append", help="only this model (repeatable; default: all)"
    )
    commands.add_parser(
        "monitor",
        help="backtest past scores whose outcome window has closed, check inputs and scores for drift, raise alerts",
    ).add_argument(
        "--since",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="the first scoring date to monitor (default: every stored one); dates already monitored are skipped",
    )
    erase = commands.add_parser("erase", help="right to be forgotten: remove customers' data everywhere")
    erase.add_argument(
        "--customer-ids",
        type=Path,
        required=True,
        metavar="FILE",
        help="one CRM customer_id per line (as the customer master delivers it)",
    )
    erase.add_argument(
        "--no-rebuild",
        action="store_true",
        help="skip the dbt build and publish that refresh the aggregates afterwards",
    )
    commands.add_parser("run", help="the whole pipeline through Airflow (airflow dags test) on the embedded default")
    commands.add_parser("ui", help="start the Airflow and MLflow UIs and the dashboard on loopback; Ctrl-C stops them")
    dashboard = commands.add_parser(
        "dashboard", help="serve the analysts' dashboard over the BI copy alone (`crm ui` serves it too)"
    )
    dashboard.add_argument(
        "--address", default="127.0.0.1", help="the address to listen on (default loopback; 0.0.0.0 in a container)"
    )
    stop = commands.add_parser("stop", help="stop the services that `crm ui` started")
    stop.add_argument(
        "--force", action="store_true", help="stop them even while a DAG run is in progress (the run fails)"
    )
    screenshots = commands.add_parser(
        "screenshots", help="screenshots of the dashboard, Airflow and MLflow on this home's last run, for docs/"
    )
    screenshots.add_argument("--out", type=Path, default=CHECKOUT / "docs", help="where the PNG files go")
    commands.add_parser(
        "pools",
        help="create or resize the Airflow pools from the warehouse's engine, in this environment's Airflow "
        "(a deployment's init step; `crm ui` does it itself)",
    )
    bench = commands.add_parser("bench", help="benchmark the stages at given scales; report to bench/results/")
    bench.add_argument("--customers", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    bench.add_argument("--days", type=int, default=730)
    bench.add_argument("--out", type=Path, default=None, help="report folder (default: bench/results)")
    bench.add_argument(
        "--postgres",
        default="",
        metavar="URL",
        help="also run on a PostgreSQL warehouse: a server URL (postgresql+psycopg://user@host:5432); "
        "each scale gets a new database there, dropped afterwards",
    )
    bench.add_argument(
        "--celery",
        default="",
        metavar="BROKER_URL",
        help="with --postgres: then crm_daily on Airflow's CeleryExecutor (two workers, this Redis broker "
        "database, emptied) over the PostgreSQL home, with one warehouse slot and with a server's",
    )
    bench.add_argument(
        "--spark",
        action="store_true",
        help="also run on Spark: a local session in each stage's process (master CRM_SPARK_MASTER, default "
        "local[2]), its tables and metastore in a home of its own, removed afterwards",
    )

    parser.add_argument(
        "--verbose", action="store_true", help="print a failure's traceback on the console too (the log always has it)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        # Airflow reads (and, where it is missing, writes) its configuration in AIRFLOW_HOME when it
        # is imported, by default under the user's home: this process imports it for some commands.
        os.environ.setdefault("AIRFLOW_HOME", str(settings.airflow_home))
        return _run(parser, args, settings)
    except pipeline.StepSkipped as skipped:  # not a failure: the reason, and nothing else
        print(f"crm {args.command}: {skipped}")
        return 0
    except Exception as error:  # one line per problem on the console; the traceback goes to the log
        return _report_failure(args.command, error, args.verbose)


def _report_failure(command: str, error: Exception, verbose: bool) -> int:
    """Print the failure as one line per problem (a landing refusal names file, source and cause on
    each line); append the traceback to the home's failure log, and print it with ``--verbose``."""
    trace = "".join(traceback.format_exception(error))
    log_path = None
    try:
        log_path = Settings.from_env().home / FAILURE_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as handle:
            handle.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} crm {command} failed\n{trace}\n")
    except (OSError, ValueError):
        log_path = None
    if verbose:
        print(trace, file=sys.stderr)
    ours = type(error).__module__.split(".")[0] in ("crm", "ml")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    for line in lines:
        print(f"crm {command}: {line if ours else f'{type(error).__name__}: {line}'.rstrip(': ')}", file=sys.stderr)
    if log_path is not None and not verbose:
        print(f"crm {command}: the traceback is in {log_path} (or run with --verbose)", file=sys.stderr)
    return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "generate":
        from crm.generate import GeneratorConfig, generate

        config = GeneratorConfig(
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            churn_window_days=settings.churn_window_days,
            defects=_defect_rates(parser, args.defect, args.no_defects),
            shift_date=args.shift_date,
            shift_purchase_factor=args.shift_purchase_factor,
            **({"end_date": args.end_date} if args.end_date else {}),
        )
        manifest = generate(config, args.out or settings.landing_dir, args.truth or settings.truth_dir)
        print(json.dumps({"rows": manifest["rows"], "defects": manifest["defects"]}, indent=2))
    elif args.command == "copy-raw":
        from crm import postgres

        print(json.dumps(postgres.copy_raw_layer(settings), indent=2))
    elif args.command == "contract-docs":
        from crm.contracts import sync_docs

        current = sync_docs(settings.docs_dir / "sources.md", write=not args.check)
        if args.check and not current:
            print("docs/sources.md is out of date: run `crm contract-docs`", file=sys.stderr)
            return 1
    elif args.command == "run":
        return run_through_airflow(settings)
    elif args.command == "ui":
        from crm import services

        return services.serve(settings)
    elif args.command == "dashboard":
        from crm import services

        command = services.dashboard_command(settings, args.address)
        os.execv(command[0], command)
    elif args.command == "screenshots":
        from crm import screenshots as pages

        for path in pages.capture_all(settings, args.out):
            print(f"wrote {path}")
    elif args.command == "stop":
        from crm import services

        in_progress = services.running_dag_runs(settings) if services.running(settings) else []
        if in_progress and not args.force:
            print(
                "DAG runs in progress: " + "; ".join(in_progress) + ". Stopping now would fail them: wait until they "
                "end, or `crm stop --force` (`make stop FORCE=1`)",
                file=sys.stderr,
            )
            return 1
        stopped = services.stop(settings)
        print(f"stopped: {', '.join(stopped)}" if stopped else "no services were running")
        if in_progress:
            print("stopped in the middle of: " + "; ".join(in_progress))
    elif args.command == "pools":
        from crm import services
        from crm.orchestration import pools

        services.create_pools(dict(os.environ), settings)
        for name, (slots, description) in pools(settings).items():
            print(f"pool {name}: {slots} slot(s): {description}")
    elif args.command == "bench":
        from crm import bench as benchmark

        return benchmark.main(
            args.customers,
            args.days,
            args.out or settings.bench_dir / "results",
            settings.warehouse_dir / "bench",
            args.postgres,
            settings.spark_master if args.spark else "",
            args.celery,
        )
    elif args.command == "erase":
        from crm.erasure import ErasureError
        from crm.erasure import erase as erase_customers

        try:
            result = erase_customers(settings, args.customer_ids, rebuild=not args.no_rebuild)
        except ErasureError as error:
            print(f"crm erase: {error}", file=sys.stderr)
            return 2
        print(json.dumps({key: result[key] for key in ("customers", "suppressed", "removed", "audit_log")}, indent=2))
        if "note" in result:
            print(f"crm erase: {result['note']}")
    elif args.command == "summary":
        print(pipeline.format_summary(pipeline.summarize(settings)))
    elif args.command == "train":
        print(json.dumps(pipeline.model_step("train")(settings, args.model), indent=2, default=str))
    elif args.command == "score":
        scores = pipeline.model_step("score")(settings, tuple(args.model or pipeline.MODELS))
        print(json.dumps(scores, indent=2, default=str))
    elif args.command == "monitor":
        print(json.dumps(pipeline.model_step("monitor")(settings, args.since), indent=2))
    elif args.command == "build":
        (pipeline.build_training_data if args.training else pipeline.build_warehouse)(settings)
    else:
        platform_steps = {"load": pipeline.load, "gate": pipeline.gate_marts, "publish": pipeline.publish}
        # evaluate is the model package's
        step = platform_steps.get(args.command) or pipeline.model_step(args.command)
        result = step(settings)
        if result is not None:
            print(json.dumps(result, indent=2, default=str))
    return 0


def _defect_rates(parser: argparse.ArgumentParser, overrides: list[str], none: bool) -> DefectRates:
    rates = DefectRates.none() if none else DefectRates()
    kinds = {f.name: f.type for f in fields(DefectRates)}
    changes: dict[str, float] = {}
    for item in overrides:
        kind, _, value = item.partition("=")
        if kind not in kinds:
            parser.error(f"--defect {item}: unknown kind {kind!r}")
        try:
            changes[kind] = int(value) if kinds[kind] == "int" else float(value)
        except ValueError:
            parser.error(f"--defect {item}: {value!r} is not a number")
    return replace(rates, **changes)


def run_through_airflow(settings: Settings) -> int:
    from crm import local_airflow

    if pipeline.ensure_demo_data(settings):
        print(f"generated the demo dataset into {settings.landing_dir}")
    if settings.as_of_date is not None:
        # Refused before Airflow starts: the run would load, then stop at its first build.
        delivered = pipeline.delivered_order_days(settings)
        if delivered:
            pipeline.check_as_of_date(settings, max(delivered))
    local_airflow.migrate(settings)
    log_path = settings.airflow_home / "logs" / f"{PIPELINE_DAG}-latest.log"
    code = local_airflow.test_dag(settings, PIPELINE_DAG, log_path)
    if code != 0:
        print(f"pipeline run failed (airflow dags test {PIPELINE_DAG} exited {code})", file=sys.stderr)
        return code
    print(pipeline.format_summary(pipeline.summarize(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
