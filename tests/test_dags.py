"""DAG integrity: every DAG file imports cleanly, declares owner/tags/retries/docs, and stays thin at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
HEAVY = ("pandas", "pyspark", "mlflow", "duckdb", "pyarrow", "dbt")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAGs found"
    files = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files == {p.name for p in DAGS_DIR.glob("*.py")}


# The retries each task runs with, as operators rely on them: idempotent warehouse/file steps retry a transient
# failure; the sensor (its own timeout), the reconciliation verdict and training/first-champion steps (hours of
# Spark, and a failure there is a finding, not a blip) do not. A changed default_args or override fails here.
EXPECTED_RETRIES = {
    "c360_ingest": {"wait_for_transactions": 0, "check_reconciliation": 0, "ingest_customers": 2,
                    "ingest_products": 2, "ingest_transactions": 2, "ingest_tracking": 2},
    "c360_transform": {"dbt_build": 1, "export_features": 1},
    "c360_train": {"prepare_snapshots": 0, "train": 0},
    "c360_score": {"ensure_champions": 0, "score": 1, "dbt_build_scores": 1, "monitor": 1, "export": 1,
                   "report": 1, "sync": 1},
}


def test_dags_declare_owner_tags_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "c360" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
    retries = {dag_id: {t.task_id: t.retries for t in dag.tasks} for dag_id, dag in dagbag.dags.items()}
    assert retries == EXPECTED_RETRIES
    for dag_id, dag in dagbag.dags.items():  # a retried task waits before trying again
        for t in dag.tasks:
            if t.retries:
                assert t.retry_delay.total_seconds() == 300, f"{dag_id}.{t.task_id}: retry_delay {t.retry_delay}"


# The tasks that never open the DuckDB file: the landing sensor (reads the landing zone) and the weekly training
# (Spark on the feature-store Parquet). Every other task reads or writes the warehouse.
OUTSIDE_THE_WAREHOUSE = {("c360_ingest", "wait_for_transactions"), ("c360_train", "train")}


def test_every_task_that_opens_the_warehouse_takes_the_single_slot_pool(dagbag):
    # DuckDB lets one process write or several read, never both: under the scheduler, DAG runs of different dates
    # overlap (a backfill), and a reader outside the pool (export_features, export, report, the volume check in
    # score) made the next date's ingest fail on the lock and wait its 5-minute retry
    outside = {(dag_id, t.task_id) for dag_id, dag in dagbag.dags.items() for t in dag.tasks
               if t.pool != "warehouse"}
    assert outside == OUTSIDE_THE_WAREHOUSE


def test_warehouse_writers_share_the_single_slot_pool(dagbag):
    dag = dagbag.dags["c360_ingest"]
    writers = [t for t in dag.tasks if t.task_id.startswith("ingest_")]
    assert len(writers) == 4
    assert {t.pool for t in writers} == {"warehouse"}
    assert all(t.outlets for t in writers)


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS_DIR.glob("*.py")))
def test_dag_files_do_not_import_heavy_libraries_at_parse_time(dag_file):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        f"print('HEAVY=' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(DAGS_DIR / dag_file)], capture_output=True, text=True,
                         check=True).stdout
    heavy = [line for line in out.splitlines() if line.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], f"{dag_file} imports {heavy} at parse time"


def test_the_chain_is_wired_by_assets_and_training_is_weekly(dagbag):
    from c360.pipeline.assets import FEATURE_STORE_ASSET, MODELS_ASSET, RAW_ASSETS, SCORES_ASSET

    def produced(dag_id):
        return {a.uri for t in dagbag.dags[dag_id].tasks for a in t.outlets}

    assert {a.uri for a in RAW_ASSETS.values()} <= produced("c360_ingest")
    assert FEATURE_STORE_ASSET.uri in produced("c360_transform")
    assert {SCORES_ASSET.uri, MODELS_ASSET.uri} <= produced("c360_score")
    score = dagbag.dags["c360_score"]
    assert [t.task_id for t in score.tasks if not t.upstream_task_ids] == ["ensure_champions"]
    assert score.get_task("report").trigger_rule == "none_failed"  # reports a night whose export was held
    # destination sync: only after a successful export (a held night is not synced), after the report (an outage
    # never holds the report back), in the warehouse pool (it writes activation.sync_log)
    sync = score.get_task("sync")
    assert sync.upstream_task_ids == {"export", "report"} and sync.trigger_rule == "all_success"
    assert sync.pool == "warehouse" and not sync.downstream_task_ids
    train = dagbag.dags["c360_train"]
    assert "0 3 * * 0" in str(train.timetable.summary) or "0 3 * * 0" in repr(train.timetable)
    assert MODELS_ASSET.uri in produced("c360_train")
    assert train.get_task("prepare_snapshots").pool == "warehouse" and train.get_task("train").pool != "warehouse"


def test_dags_accept_logical_dates_in_any_decade_without_catching_up(dagbag):
    # Airflow creates no task instance for a logical date before start_date and marks such a run successful:
    # a shop's history from the 1990s must not meet that. catchup=False keeps a scheduler from backfilling.
    from datetime import UTC, datetime

    for dag_id, dag in dagbag.dags.items():
        assert dag.start_date <= datetime(1970, 1, 1, tzinfo=UTC), dag_id
        assert dag.catchup is False, dag_id
