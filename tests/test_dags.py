from airflow.dag_processing.dagbag import DagBag

from crm.settings import Settings


def test_every_dag_file_imports_without_errors():
    bag = DagBag(dag_folder=str(Settings.from_env().dags_dir))
    assert bag.import_errors == {}
    assert "crm_pipeline" in bag.dag_ids


def test_pipeline_dag_runs_the_gate_before_training_and_scoring():
    dag = DagBag(dag_folder=str(Settings.from_env().dags_dir)).dags["crm_pipeline"]
    gate = dag.get_task("quality_gate_marts")
    assert "train_churn" in gate.get_flat_relative_ids(upstream=False)
    assert "score_churn" in gate.get_flat_relative_ids(upstream=False)
    assert dag.max_active_runs == 1
