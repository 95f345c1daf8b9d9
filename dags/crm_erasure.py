"""
### CRM erasure (right to be forgotten)

Triggered by hand for an erasure request: **param `customer_ids_file`**, the path of a text file with
one CRM `customer_id` per line (as the customer master delivers it), readable by the workers. The
ids are passed as a file, not in the run's params, because params stay in Airflow's metadata
database and UI for as long as the run is kept; delete the file once the run has succeeded.

The same steps as `crm erase --customer-ids FILE` (module `crm.erasure`): the requested customers
and every CRM record identity resolution links to them go on the suppression list (keyed hashes) →
their records are removed from every landing partition (each file rewritten, then renamed over the
old one) → their rows are deleted from raw, the quarantine, staging, the snapshot, the marts and the
score tables in one transaction → the BI copy is replaced → one line with hashed ids and counts is
appended to the erasure audit log → dbt build and publish refresh the aggregates. Every step finds
its records through the suppression list, so a failed run is simply run again. Later deliveries of
an erased customer are suppressed in dbt staging. Every task takes the `crm_warehouse` pool.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, chain, dag, get_current_context, task

from crm import orchestration as steps


@task
def record_suppression() -> dict[str, object]:
    """Resolve the requested customers and put the hashes of their ids and contacts on the suppression list."""
    from airflow.sdk.exceptions import AirflowFailException

    from crm import erasure

    try:
        ids = erasure.read_customer_ids(Path(get_current_context()["params"]["customer_ids_file"]))
    except erasure.ErasureError as error:  # a bad request does not get better by retrying
        raise AirflowFailException(str(error)) from error
    return erasure.record_suppression(steps.settings_for_run(), ids)


@task
def erase_landing_files() -> dict[str, int]:
    from crm import erasure

    return erasure.erase_landing(steps.settings_for_run())


@task
def erase_warehouse_rows() -> dict[str, int]:
    from crm import erasure

    return erasure.erase_warehouse(steps.settings_for_run())


@task
def republish_bi_copy() -> dict[str, int]:
    from crm import erasure

    return {"tables_republished": len(erasure.republish_bi(steps.settings_for_run()))}


@task
def write_erasure_audit(
    suppression: dict[str, object], landing: dict[str, int], warehouse: dict[str, int], bi: dict[str, int]
) -> str:
    from crm import erasure

    return str(
        erasure.write_audit(
            steps.settings_for_run(), suppression, {"landing": landing, "warehouse": warehouse, "bi": bi}
        )
    )


@dag(
    dag_id="crm_erasure",
    schedule=None,
    doc_md=__doc__,
    **{
        **steps.DAG_ARGS,
        "params": {
            **steps.PARAMS,
            "customer_ids_file": Param(
                type="string", minLength=1, description="Path of a text file with one CRM customer_id per line."
            ),
        },
    },
)
def crm_erasure():
    suppression = record_suppression()
    landing = erase_landing_files()
    warehouse = erase_warehouse_rows()
    bi = republish_bi_copy()
    chain(suppression, landing, warehouse, bi)
    chain(write_erasure_audit(suppression, landing, warehouse, bi), steps.dbt_build(), steps.publish_marts())


crm_erasure()
