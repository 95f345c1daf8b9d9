"""`crm ui` on a copy of the end-to-end run's home: real Airflow (api-server, scheduler, dag-processor,
triggerer; LocalExecutor) and a real MLflow server, driven through their REST APIs and a browser.

One stack for the module: every check runs against it, and the last one stops it."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

from crm import screenshots, services


@pytest.fixture(scope="module")
def ui(home_copy, free_port):
    """The services on a copy of the end-to-end run's home (it has data, a warehouse and champions)."""
    settings = home_copy(
        "ui",
        airflow_ui_port=free_port(),
        mlflow_ui_port=free_port(),
        dashboard_port=free_port(),
    )
    endpoints = services.start(settings)
    groups = json.loads(services.pid_file(settings).read_text())
    yield settings, endpoints, groups
    services.stop(settings)


@pytest.fixture(scope="module")
def daily_run(ui) -> tuple[set[str], str, str, dict[str, str]]:
    """The DAGs the API lists, then one triggered crm_daily run, waited for: (dag ids, run id, state, task states).

    About 90 tasks: one dbt build watched by a task per dbt node (and one per model's tests), then the
    gate, scoring and publication: about 3 minutes on two cores."""
    _, endpoints, _ = ui
    api = services.AirflowApi(endpoints)
    dags = {"crm_daily", "crm_training", "crm_pipeline"}
    listed = api.dag_ids(dags)
    run_id = api.trigger("crm_daily")
    state, tasks = api.wait_for_run("crm_daily", run_id, timeout_s=1800)
    return listed, run_id, state, tasks


def test_airflow_api_lists_the_dags_and_a_triggered_daily_run_succeeds(ui, daily_run):
    """Runs crm_daily as users do, one task per dbt node under the real scheduler: the longest test
    (3 to 5 minutes); the other checks share its stack."""
    settings, endpoints, _ = ui
    api = services.AirflowApi(endpoints)
    listed, run_id, state, tasks = daily_run
    assert {"crm_daily", "crm_training", "crm_pipeline"} <= listed
    logs = settings.airflow_home / "logs"
    assert state == "success", f"crm_daily ended {state}: {tasks} (logs under {logs})"
    assert tasks["score_models"] == tasks["publish_marts"] == "success", tasks
    # The home's DAGs were serialized by `crm run` with the default daily schedule; `crm ui` serves
    # crm_daily with none (CRM_UI_DAILY_SCHEDULE), so unpausing started no scheduled run beside the
    # triggered one.
    assert [run["dag_run_id"] for run in api.runs("crm_daily")] == [run_id]


def _task_log(api: services.AirflowApi, run_id: str, task_id: str, try_number: int) -> str:
    run = f"dags/crm_daily/dagRuns/{urllib.parse.quote(run_id)}"
    log = api.call(f"{run}/taskInstances/{task_id}/logs/{try_number}")
    return "\n".join(str(entry) for entry in log["content"])


def test_the_watched_build_runs_each_model_and_its_data_tests_but_not_the_unit_tests(ui, daily_run):
    """crm_daily's dbt build, one task watched by a task per node (its log read through the API, as the
    benchmark reads it): the models and their data tests; the unit tests are left to crm_pipeline's build
    (test_end_to_end). Each node's task reports its own node."""
    _, endpoints, _ = ui
    _, run_id, _, tasks = daily_run
    api = services.AirflowApi(endpoints)
    build = _task_log(api, run_id, "dbt.dbt_producer_watcher", 1)
    assert "OK created sql incremental model staging.stg_shop__orders" in build
    assert "PASS unique_stg_shop__orders_order_id" in build
    assert "START unit_test" not in build
    assert tasks["dbt.stg_shop__orders.run"] == tasks["dbt.stg_shop__orders.test"] == "success"
    assert "model.crm.stg_shop__orders" in _task_log(api, run_id, "dbt.stg_shop__orders.run", 1)


def test_a_cleared_model_task_rebuilds_its_model_alone(ui, daily_run):
    """Clear-and-rerun of one model, as a user does it in the UI: the build it watched has ended, so the
    task builds its model on its own (dbt run --select), and the run ends successful again."""
    _, endpoints, _ = ui
    _, run_id, _, _ = daily_run
    api = services.AirflowApi(endpoints)
    task_id = "dbt.dim_customers.run"
    instance = f"dags/crm_daily/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}"
    first_try = api.call(instance)["try_number"]
    body = {"dag_run_id": run_id, "task_ids": [task_id], "dry_run": False, "only_failed": False}
    cleared = api.call("dags/crm_daily/clearTaskInstances", "POST", {**body, "include_downstream": False})
    assert [ti["task_id"] for ti in cleared["task_instances"]] == [task_id]
    assert screenshots.wait_until(
        lambda: (ti := api.call(instance))["try_number"] > first_try and ti["state"] in ("success", "failed"), 300
    )
    rerun = api.call(instance)
    log = _task_log(api, run_id, task_id, rerun["try_number"])
    assert rerun["state"] == "success", log
    assert "OK created sql table model marts.dim_customers" in log
    assert "Finished running 1 project hook, 1 table model" in log  # its model alone
    state, _ = api.wait_for_run("crm_daily", run_id, timeout_s=300)
    assert state == "success"


def test_task_processes_fork_from_a_warmed_up_forkserver(ui, daily_run):
    """The scheduler's forkserver ran crm.task_preload (dbt imported and one parse done) before the
    daily run's tasks forked from it, and nothing in the warm-up failed."""
    settings, _, _ = ui
    log = (settings.airflow_home / "logs" / "services" / "airflow-scheduler.log").read_text(errors="replace")
    assert services.TASK_PRELOAD_WARMED_UP in log
    assert services.TASK_PRELOAD_FAILED not in log


def test_mlflow_api_lists_the_models_with_their_champion(ui):
    _, endpoints, _ = ui
    models = services.request_json(f"{endpoints.mlflow_url}/api/2.0/mlflow/registered-models/search")[
        "registered_models"
    ]
    aliases = {model["name"]: {alias["alias"] for alias in model.get("aliases", [])} for model in models}
    assert set(aliases) == {"crm_churn", "crm_segmentation", "crm_satisfaction", "crm_clv", "crm_recommendations"}
    assert all("champion" in names for names in aliases.values()), aliases


def _browser():
    try:
        return screenshots.browser()
    except screenshots.BrowserMissing as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(str(missing))
        pytest.skip(str(missing))


def _assert_shows_a_page(png: Path) -> None:
    """A PNG of the browser window with content: not a blank or single-colour page."""
    from PIL import Image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 16, f"{png.name} shows {len(colours)} colours: an empty page"


def test_screenshots_show_the_dag_graph_and_the_registered_models(ui, tmp_path: Path):
    """What `crm screenshots` captures of Airflow and MLflow (crm.screenshots): each page renders."""
    _, endpoints, _ = ui
    airflow_png, mlflow_png = tmp_path / "airflow_crm_daily.png", tmp_path / "mlflow_models.png"
    driver = _browser()
    try:
        screenshots.capture_airflow_graph(driver, endpoints, airflow_png)
        screenshots.capture_mlflow_models(driver, endpoints, mlflow_png)
    finally:
        driver.quit()
    for png in (airflow_png, mlflow_png):
        _assert_shows_a_page(png)
        assert png.stat().st_size > 20_000


def test_the_daily_runs_task_logs_hold_no_email_or_phone(ui, daily_run, pii_scan):
    """What test_privacy checks on `crm run`, on the scheduler's per-model task logs and the services' logs."""
    settings, _, _ = ui
    pii = pii_scan(settings.landing_dir)
    leaks = pii.home_leaks(settings)
    assert not leaks, pii.report(leaks)


def test_the_runs_data_docs_render_offline_with_every_gate(ui):
    """The run's Data Docs site in Chromium, from the disk: its index table (built by bootstrap-table's
    script, which the site now carries) lists the raw, mart and score validations."""
    settings, _, _ = ui
    day = json.loads(settings.run_summary_path.read_text())["as_of_date"]
    index = settings.data_docs_dir / day / "index.html"
    driver = _browser()
    try:
        driver.get(index.as_uri())
        shown = screenshots.wait_until(lambda: "Showing 1 to" in screenshots.body_text(driver), 30)
        text = screenshots.body_text(driver)
    finally:
        driver.quit()
    assert shown, text[:2000]
    assert all(suite in text for suite in ("raw_orders", "fct_orders", "churn_scores")), text[:2000]


def test_the_dashboard_shows_the_bi_copys_figures(ui, daily_run, tmp_path: Path):
    """The dashboard page in Chromium, after the daily run's publication: its headline figures and
    tables are the BI copy's, as a query of the copy computes them."""
    import duckdb

    settings, endpoints, _ = ui
    with duckdb.connect(str(settings.bi_warehouse_path), read_only=True) as con:
        active = con.execute(
            "select active_customers from marts.metrics_daily order by metric_date desc limit 1"
        ).fetchone()[0]
        bands = con.execute(
            "select churn_risk_band, count(*) from marts.customer_360 where churn_risk_band is not null group by 1"
        ).fetchall()
        segments = con.execute(
            "select segment_name, count(*) from marts.customer_360 where segment_name is not null group by 1"
        ).fetchall()
        quarantined = con.execute(
            "select source, rejected_at, reason, sum(rejected_rows) from marts.quarantine_daily group by 1, 2, 3"
        ).fetchall()
        gated = con.execute(
            "select suite, passed from monitoring.quality_gates "
            "where as_of_date = (select max(as_of_date) from monitoring.quality_gates)"
        ).fetchall()
        latest_campaign = con.execute(
            "select campaign_name from marts.campaign_performance order by sent_on desc limit 1"
        ).fetchone()[0]
    png = tmp_path / "dashboard.png"
    driver = _browser()
    try:
        text = screenshots.capture_dashboard(driver, endpoints, png)
    finally:
        driver.quit()
    assert f"Active customers\n{active:,}\n" in text, text[:1500]
    for band, customers in bands:
        assert f"\n{band}\n{customers:,}\n" in text, (band, customers, text[:3000])
    for segment, customers in segments:
        assert f"\n{segment}\n{customers:,}\n" in text, (segment, customers)
    assert quarantined, "the end-to-end delivery has defects: some rows are quarantined"
    for source, stage, reason, rows in quarantined:
        assert f"\n{source}\n{stage}\n{reason}\n{int(rows):,}\n" in text, (source, stage, reason, rows)
    assert latest_campaign in text
    # The latest run's gates: the load's raw suites, the mart and the score suites, each with its outcome.
    assert {"raw_orders", "dim_customers", "churn_scores"} <= {suite for suite, _ in gated}, gated
    for suite, passed in gated:
        assert f"\n{suite}\n" in text and ("yes" if passed else "no") in text, suite
    assert "Traceback" not in text and "Error" not in text
    _assert_shows_a_page(png)


def test_stop_refuses_while_a_dag_run_is_in_progress_and_force_ends_every_service(ui, monkeypatch, capsys):
    """Last in this file: it stops the module's stack. `crm stop` names the runs in progress and stops
    nothing; `crm stop --force` stops every service and says which runs it cut short."""
    from crm import cli

    settings, endpoints, groups = ui
    run_id = services.AirflowApi(endpoints).trigger("crm_daily")
    assert screenshots.wait_until(lambda: any(run_id in run for run in services.running_dag_runs(settings)), 120)
    for name in ("home", "airflow_ui_port", "mlflow_ui_port", "dashboard_port"):
        monkeypatch.setenv(f"CRM_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("AIRFLOW_HOME", str(settings.airflow_home))  # crm sets it where unset: undone after
    assert cli.main(["stop"]) == 1
    refused = capsys.readouterr().err
    assert f"crm_daily {run_id}" in refused and "crm stop --force" in refused, refused
    assert services.running(settings) and all(services.group_alive(pgid) for pgid in groups.values())
    assert cli.main(["stop", "--force"]) == 0
    assert f"stopped in the middle of: crm_daily {run_id}" in capsys.readouterr().out
    assert not any(services.group_alive(pgid) for pgid in groups.values())
    assert not services.pid_file(settings).exists()
