"""Probe DAGs for tests/test_production_stack.py (the stack of infra/stack.sh: PostgreSQL, LocalExecutor).

`probe_nightly` is scheduled like c360_ingest (daily data intervals, max_active_runs=1) and publishes its run date
like c360_ingest's tasks, so a backfill of it starts `probe_transform` (c360_probe.py) once per date.
`probe_retry` runs the pipeline's own landing check (c360.pipeline.tasks.transactions_landed, the body of c360_ingest's
sensor) against the S3 landing zone; the test keeps S3 unreachable for the first try only.
Both append what they did to $C360_PROBE_LOG.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Asset, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from c360.pipeline.assets import DAG_START_DATE

RAW = Asset(name="probe.raw", uri="c360://probe/raw")  # the Asset probe_transform (c360_probe.py) schedules on


def _log(line: str) -> None:
    with open(os.environ["C360_PROBE_LOG"], "a") as f:
        f.write(line + "\n")


@dag(dag_id="probe_nightly", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
     start_date=DAG_START_DATE, catchup=False, max_active_runs=1)
def probe_nightly():
    @task(outlets=[RAW])
    def land(**context):
        from c360.pipeline import tasks

        day = tasks.run_date_from_context(context)
        _log(f"nightly {day.isoformat()} {context['dag_run'].run_id}")
        tasks.publish_run_date(context, day)

    land()


@dag(dag_id="probe_retry", schedule=None, start_date=DAG_START_DATE, catchup=False)
def probe_retry():
    # the retry delay leaves the test time to see the first failure and bring S3 back
    @task(retries=1, retry_delay=timedelta(seconds=15))
    def wait_for_transactions(ds=None, ti=None):
        from c360.pipeline import tasks

        _log(f"retry try={ti.try_number} start")
        try:
            landed = tasks.transactions_landed(ds)
        except Exception as exc:
            _log(f"retry try={ti.try_number} failed {type(exc).__name__}")
            raise
        _log(f"retry try={ti.try_number} landed={landed}")
        if not landed:
            raise RuntimeError(f"transactions/dt={ds}/ not landed")

    wait_for_transactions()


probe_nightly()
probe_retry()
