"""Object-store URLs for what workers on other hosts share: the landing (mirrored into a worker's
own folder before each load), dbt's artifacts and the Data Docs (uploaded after the step that wrote
them) and MLflow's artifacts (written there directly). An S3 endpoint runs in this process (moto's
server): the real fsspec/s3fs and boto3 clients talk HTTP to it, as they would to S3 or MinIO."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import fsspec
import mlflow
import pytest
from moto.server import ThreadedMotoServer

from crm import pipeline, storage
from crm.dbt import run_dbt
from crm.erasure import erase_landing, record_suppression
from crm.generate import GeneratorConfig, generate
from crm.settings import Settings
from crm.warehouse import open_warehouse
from ml import registry

BUCKET = "crm-shared"


@pytest.fixture(scope="module")
def object_store(free_port) -> Iterator[str]:
    """An S3 endpoint on loopback with one bucket; the AWS_* variables every client reads point at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(BUCKET)
        yield f"s3://{BUCKET}"
    server.stop()


def _store() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", skip_instance_cache=True)


def test_the_mirror_follows_the_store_and_refuses_a_missing_url(object_store: str, tmp_path: Path):
    url, local = f"{object_store}/mirror", tmp_path / "mirror"
    store = _store()
    store.pipe_file(f"{url}/orders/dt=2026-11-01/part-0.csv", b"order_id\n1\n")
    store.pipe_file(f"{url}/orders/dt=2026-11-01/.part-1.csv.writing", b"half")
    assert storage.mirror(url, local) == {"downloaded": 1, "unchanged": 0, "deleted": 0}
    assert sorted(p.name for p in local.rglob("*") if p.is_file()) == [storage.MIRROR_STATE, "part-0.csv"]
    # A corrected re-delivery replaces the file; a withdrawn part disappears from the mirror too.
    store.pipe_file(f"{url}/orders/dt=2026-11-01/part-0.csv", b"order_id\n1\n2\n")
    store.pipe_file(f"{url}/orders/dt=2026-11-02/part-0.csv", b"order_id\n3\n")
    assert storage.mirror(url, local) == {"downloaded": 2, "unchanged": 0, "deleted": 0}
    assert (local / "orders" / "dt=2026-11-01" / "part-0.csv").read_bytes() == b"order_id\n1\n2\n"
    store.rm_file(f"{url}/orders/dt=2026-11-02/part-0.csv")
    assert storage.mirror(url, local) == {"downloaded": 0, "unchanged": 1, "deleted": 1}
    assert not (local / "orders" / "dt=2026-11-02" / "part-0.csv").exists()
    with pytest.raises(FileNotFoundError, match=f"{object_store}/nowhere"):
        storage.mirror(f"{object_store}/nowhere", tmp_path / "other")


def test_a_worker_loads_builds_and_logs_through_the_object_store(object_store: str, tmp_path: Path):
    """A worker whose landing folder is empty: everything it reads comes from the store, everything
    others read goes back to it. A small delivery, one dbt model built: the shared files are the point."""
    delivered = tmp_path / "delivered"
    generate(GeneratorConfig(customers=60, days=10), delivered, tmp_path / "truth")
    _store().put(str(delivered), f"{object_store}/landing", recursive=True)
    worker = Settings.from_env(
        home=tmp_path / "worker",
        landing_url=f"{object_store}/landing",
        dbt_artifacts_url=f"{object_store}/dbt",
        data_docs_url=f"{object_store}/data_docs",
        mlflow_artifacts_url=f"{object_store}/mlflow",
        gate_recent_days=1,
    )
    assert not pipeline.ensure_demo_data(worker)  # a named landing gets no demo data
    loaded = pipeline.load(worker)["rows"]
    assert loaded["customers"] > 0 and loaded["orders"] > 0, loaded
    mirrored = {p.relative_to(worker.landing_dir) for p in worker.landing_dir.rglob("*") if p.is_file()}
    assert mirrored - {Path(storage.MIRROR_STATE)} == {
        p.relative_to(delivered) for p in delivered.rglob("*") if p.is_file()
    }
    store = _store()
    assert store.exists(f"{object_store}/data_docs/index.html")

    run_dbt(worker, ["run", "--select", "+stg_crm__customers"], pipeline.dbt_vars(worker))
    assert store.exists(f"{object_store}/dbt/manifest.json") and store.exists(f"{object_store}/dbt/run_results.json")

    client = registry.configure(worker)
    with mlflow.start_run(experiment_id=registry.experiment_id(worker, client, "object_store_check")) as run:
        mlflow.log_text("shared", "note.txt")
    assert run.info.artifact_uri.startswith(f"{object_store}/mlflow/object_store_check/")
    assert store.cat_file(f"{run.info.artifact_uri}/note.txt") == b"shared"

    # An erasure rewrites the store's files, not only the worker's mirror: another worker's next
    # mirror must not bring the records back.
    with open_warehouse(worker, read_only=True) as warehouse:
        (customer_id,) = warehouse.row("select min(cast(customer_id as bigint)) from raw.customers")
    record_suppression(worker, [customer_id])
    assert erase_landing(worker)["customers"] > 0
    other = tmp_path / "other-worker"
    storage.mirror(f"{object_store}/landing", other)
    shutil.rmtree(worker.landing_dir)
    storage.mirror(f"{object_store}/landing", worker.landing_dir)
    assert str(customer_id) in _customer_ids(delivered)
    assert str(customer_id) not in _customer_ids(other) | _customer_ids(worker.landing_dir)


def _customer_ids(landing: Path) -> set[str]:
    ids: set[str] = set()
    for path in (landing / "customers").rglob("*.csv"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            ids |= {row["customer_id"] for row in csv.DictReader(handle)}
    return ids
