"""The local UIs: Airflow (api-server, scheduler, dag-processor, triggerer), an MLflow tracking
server and the analysts' dashboard (crm.dashboard, Streamlit) on loopback, against the same stores
as `make run`.

Each service starts in its own session (process group), so stopping it reaches every child: the
scheduler's LocalExecutor workers, the api-server's workers. The process groups are recorded in a
file under the Airflow home, so `crm stop` (`make stop`) from another shell stops them too.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from crm.local_airflow import airflow_command, airflow_env, migrate, run_airflow
from crm.settings import Settings, home_secret

ADMIN_USER = "admin"
# The scheduler's LocalExecutor workers start from a forkserver that imported and warmed these once;
# every task process (a fork of a worker) starts with them: dbt, already warmed up by one parse of the
# project, and cosmos (each per-model dbt task of crm_daily), Great Expectations (load, gates,
# scoring) and MLflow (scoring, training). See crm.task_preload.
TASK_PRELOAD = (
    "airflow",
    "airflow.executors.local_executor",
    "crm.task_preload",
)
# What the warm-up writes to the scheduler's output (its forkserver has no logging configured).
TASK_PRELOAD_WARMED_UP = "crm task preload: dbt warmed up"
TASK_PRELOAD_FAILED = "crm task preload: the dbt warm-up failed"
SCHEDULER_IDLE_SLEEP_S = "0.2"
# How often the dag-processor parses a DAG file that has not changed (Airflow's default: 30 s). The
# files change only with a deployment, and a changed file is parsed at once whatever this says
# (file_parsing_sort_mode=modified_time); every 30 s, parsing the four files took about a fifth of a
# core (crm_daily's dbt task group alone 2.4 s). A new dbt model appears in crm_daily within this.
DAG_FILE_PARSE_INTERVAL_S = "300"
STARTUP_TIMEOUT_S = 180
STOP_GRACE_S = 20


@dataclass(frozen=True)
class Endpoints:
    airflow_url: str
    mlflow_url: str
    dashboard_url: str
    user: str
    password: str


class AirflowApi:
    """A small client of Airflow's REST API (v2) with the local admin's token."""

    def __init__(self, endpoints: Endpoints):
        self.base = f"{endpoints.airflow_url}/api/v2"
        self.token = request_json(
            f"{endpoints.airflow_url}/auth/token",
            method="POST",
            body={"username": endpoints.user, "password": endpoints.password},
        )["access_token"]

    def call(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        return request_json(f"{self.base}/{path}", method, body, {"Authorization": f"Bearer {self.token}"})

    def dag_ids(self, expected: set[str], timeout_s: float = 120) -> set[str]:
        """The serialized DAGs, once ``expected`` are among them (the dag-processor needs a moment)."""
        deadline, found = time.monotonic() + timeout_s, set()
        while time.monotonic() < deadline and not expected <= found:
            found = {dag["dag_id"] for dag in self.call("dags")["dags"]}
            time.sleep(2)
        return found

    def unpause(self, dag_id: str) -> None:
        self.call(f"dags/{dag_id}", "PATCH", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Unpause the DAG and trigger a manual run; return its run id."""
        self.unpause(dag_id)
        return self.call(f"dags/{dag_id}/dagRuns", "POST", {"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.call(f"dags/{dag_id}/dagRuns?limit=1000&order_by=logical_date")["dag_runs"]

    def wait_for_runs(self, dag_id: str, select, count: int, timeout_s: float = 900) -> list[dict]:
        """Poll until ``count`` runs that ``select`` accepts exist and have all ended; return them."""
        deadline, chosen = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            chosen = [run for run in self.runs(dag_id) if select(run)]
            if len(chosen) >= count and all(run["state"] in ("success", "failed") for run in chosen):
                break
            time.sleep(5)
        return chosen

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 600) -> tuple[str, dict[str, str]]:
        """Poll until the run ends; return its state and each task's state."""
        run = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"
        deadline, state = time.monotonic() + timeout_s, "queued"
        while time.monotonic() < deadline:
            state = self.call(run)["state"]
            if state in ("success", "failed"):
                break
            time.sleep(3)
        return state, {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's task instances (task_id, state, start_date, end_date, pool, ...)."""
        run = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"
        return self.call(f"{run}/taskInstances?limit=1000")["task_instances"]


def request_json(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})}, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def pid_file(settings: Settings) -> Path:
    return settings.airflow_home / "services.json"


def service_env(settings: Settings) -> dict[str, str]:
    """Airflow with its executor (CRM_AIRFLOW_EXECUTOR: LocalExecutor, or CeleryExecutor with the broker
    and result backend of the settings) and the simple auth manager's one admin, on loopback."""
    home = settings.airflow_home
    passwords = home / "simple_auth_manager_passwords.json"
    home_secret(passwords, lambda: json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}))
    api = f"http://127.0.0.1:{settings.airflow_ui_port}"
    return {
        **airflow_env(settings),
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[settings.airflow_executor],
        "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": settings.celery_results_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__PARALLELISM": "4",  # 32 idle workers by default: about 1 GB more
        # crm_daily's tasks run one after another (the warehouse pool): a scheduler that sleeps a second
        # whenever a loop found nothing to do leaves that much between them. 0.2 s: the gaps of a daily
        # run's 55 tasks went from 38 to 17 s at demo size.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": SCHEDULER_IDLE_SLEEP_S,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": DAG_FILE_PARSE_INTERVAL_S,
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_PRELOAD),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_ui_port),
        "AIRFLOW__API__WORKERS": "1",
        # Every process must sign and check the same tokens (tasks talk to the execution API).
        "AIRFLOW__API_AUTH__JWT_SECRET": home_secret(home / "jwt_secret", lambda: secrets.token_urlsafe(32)),
        "AIRFLOW__API__SECRET_KEY": home_secret(home / "api_secret_key", lambda: secrets.token_urlsafe(32)),
        # The DAG files and tasks build their settings from the environment: hand them these.
        "CRM_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "CRM_AIRFLOW_DATABASE_URL": settings.airflow_database_url,
        "CRM_WAREHOUSE_URL": settings.warehouse_url,
        "CRM_DAILY_SCHEDULE": settings.ui_daily_schedule,
        "CRM_DAILY_DBT_TASKS": settings.daily_dbt_tasks,
        "CRM_AIRFLOW_EXECUTOR": settings.airflow_executor,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
DASHBOARD_APP = Path(__file__).parent / "dashboard" / "app.py"
CELERY_WORKER = "airflow-celery-worker"


def login(settings: Settings) -> tuple[str, str]:
    passwords = json.loads((settings.airflow_home / "simple_auth_manager_passwords.json").read_text())
    return ADMIN_USER, passwords[ADMIN_USER]


def commands(settings: Settings) -> dict[str, list[str]]:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    workers = settings.celery_workers if settings.airflow_executor == "celery" else 0
    return {
        **{
            f"{CELERY_WORKER}-{number}": airflow_command(
                "celery", "worker", "--celery-hostname", f"crm-worker-{number}@%h", "--without-mingle"
            )
            for number in range(1, workers + 1)
        },
        "airflow-api-server": airflow_command(
            "api-server", "--host", "127.0.0.1", "--port", str(settings.airflow_ui_port)
        ),
        "airflow-scheduler": airflow_command("scheduler"),
        "airflow-dag-processor": airflow_command("dag-processor"),
        "airflow-triggerer": airflow_command("triggerer"),
        "mlflow-server": [
            mlflow,
            "server",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.mlflow_ui_port),
            "--workers",
            "1",
            # Experiments created through the server keep their artifacts where the tasks' do.
            *(["--default-artifact-root", settings.mlflow_artifacts_url] if settings.mlflow_artifacts_url else []),
        ],
        "dashboard": dashboard_command(settings),
    }


def dashboard_command(settings: Settings, address: str = "127.0.0.1") -> list[str]:
    """Streamlit serving the dashboard (crm.dashboard) at ``address`` and the settings' port."""
    return [
        str(Path(sys.executable).with_name("streamlit")),
        "run",
        str(DASHBOARD_APP),
        f"--server.address={address}",
        f"--server.port={settings.dashboard_port}",
        "--server.headless=true",
        # Offline, and nothing about the analysts leaves the machine.
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        # A dashboard to read, not an app to edit or deploy.
        "--client.toolbarMode=viewer",
    ]


def start(settings: Settings) -> Endpoints:
    """Start every service in the background, wait until both UIs answer, and return where they are."""
    if running(settings):
        raise RuntimeError(f"the local services already run (see {pid_file(settings)}): `crm stop` first")
    migrate(settings)
    env = service_env(settings)
    create_pools(env, settings)
    serialize_dags(env)
    logs = settings.airflow_home / "logs" / "services"
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands(settings).items():
            # A worker runs in a folder of its own, as on another host: no task may rely on the
            # scheduler's working directory.
            cwd, own_env = None, env
            if name.startswith(CELERY_WORKER):
                cwd = settings.airflow_home / "workers" / name
                cwd.mkdir(parents=True, exist_ok=True)
                # Each worker serves its task logs to the UI on a port of its own.
                own_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())}
            with (logs / f"{name}.log").open("ab") as log:
                processes[name] = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=own_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        # Each service leads its own session: its pid is the process group id.
        pid_file(settings).write_text(json.dumps({name: p.pid for name, p in processes.items()}, indent=2))
        endpoints = endpoints_of(settings)
        _wait_healthy(f"{endpoints.airflow_url}/api/v2/monitor/health", processes, logs)
        _wait_healthy(f"{endpoints.mlflow_url}/health", processes, logs)
        _wait_healthy(f"{endpoints.dashboard_url}/_stcore/health", processes, logs)
        return endpoints
    except BaseException:
        stop(settings)
        raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_pools(env: dict[str, str], settings: Settings) -> None:
    """The pools the DAGs' tasks take (crm.orchestration.pools, sized from the warehouse's engine), in
    one Airflow command."""
    import json
    import tempfile

    from crm.orchestration import pools as engine_pools

    pools = {name: {"slots": slots, "description": text} for name, (slots, text) in engine_pools(settings).items()}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(pools, file)
        file.flush()
        run_airflow(env, "pools", "import", file.name)


def serialize_dags(env: dict[str, str]) -> None:
    """Serialize the DAGs as this environment defines them (CRM_DAILY_SCHEDULE, CRM_DAILY_DBT_TASKS)
    before the scheduler starts. A home keeps the DAGs its last `crm run` serialized, with that run's
    schedule: unpausing crm_daily before the dag-processor's first parse would otherwise start a
    scheduled run from the stale schedule beside the one asked for."""
    run_airflow(env, "dags", "reserialize")


def _wait_healthy(url: str, processes: dict[str, subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited during start-up; end of its log:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {STARTUP_TIMEOUT_S} s (logs in {logs})")


def running(settings: Settings) -> bool:
    path = pid_file(settings)
    return path.exists() and any(group_alive(pgid) for pgid in json.loads(path.read_text()).values())


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def endpoints_of(settings: Settings) -> Endpoints:
    """Where the services of ``settings`` answer, with the local admin's login."""
    return Endpoints(
        f"http://127.0.0.1:{settings.airflow_ui_port}",
        f"http://127.0.0.1:{settings.mlflow_ui_port}",
        f"http://127.0.0.1:{settings.dashboard_port}",
        *login(settings),
    )


def running_dag_runs(settings: Settings) -> list[str]:
    """The DAG runs the running services are in the middle of, as "dag_id run_id (since ...)"; none when
    the API does not answer (then nothing can be said about them)."""
    try:
        api = AirflowApi(endpoints_of(settings))
        runs = api.call("dags/~/dagRuns?state=running&limit=100")["dag_runs"]
    except (OSError, ValueError, KeyError):
        return []
    return [f"{run['dag_id']} {run['dag_run_id']} (started {run.get('start_date') or 'not yet'})" for run in runs]


def stop(settings: Settings) -> list[str]:
    """SIGTERM every service's process group, SIGKILL what is left after a grace period; return the names."""
    path = pid_file(settings)
    if not path.exists():
        return []
    groups: dict[str, int] = json.loads(path.read_text())
    for pgid in groups.values():
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(_reaped_or_alive(pgid) for pgid in groups.values()):
        time.sleep(0.5)
    for pgid in groups.values():
        _signal_group(pgid, signal.SIGKILL)
    while time.monotonic() < deadline + 5 and any(_reaped_or_alive(pgid) for pgid in groups.values()):
        time.sleep(0.2)
    path.unlink(missing_ok=True)
    return list(groups)


def _reaped_or_alive(pgid: int) -> bool:
    """Whether the group still has a live process. A leader that exited stays a zombie, still in its
    group, until its parent reaps it: when that parent is this process (`crm ui`), reap it here."""
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent or init reaps it
    return group_alive(pgid)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve(settings: Settings) -> int:
    """`crm ui`: start, print where everything is, and stop everything on Ctrl-C or SIGTERM."""
    endpoints = start(settings)
    print(
        f"Airflow UI:  {endpoints.airflow_url}  (login {endpoints.user} / {endpoints.password})\n"
        f"MLflow UI:   {endpoints.mlflow_url}\n"
        f"Dashboard:   {endpoints.dashboard_url}  (the BI copy, read-only)\n"
        f"Logs:        {settings.airflow_home / 'logs' / 'services'}\n"
        "Ctrl-C or `make stop` stops every service (`make stop` refuses while a DAG run is in progress).",
        flush=True,
    )

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        while running(settings):
            time.sleep(2)
        print("the services were stopped")
    except KeyboardInterrupt:
        in_progress = running_dag_runs(settings)
        print(f"stopped: {', '.join(stop(settings))}")
        if in_progress:
            print("stopped in the middle of: " + "; ".join(in_progress) + " (they fail; trigger them again)")
    return 0
