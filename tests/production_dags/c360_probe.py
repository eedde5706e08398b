"""Probe DAGs for tests/test_production_assets.py: the pipeline's Asset wiring without the pipeline's work.

`probe_ingest` publishes its run date like c360_ingest's tasks (c360.pipeline.tasks.publish_run_date); `probe_transform`
is scheduled exactly like c360_transform / c360_score (c360.pipeline.assets.per_date_schedule, max_active_runs=1) and
appends the date it resolves (c360.pipeline.tasks.run_date_from_context) to $C360_PROBE_LOG, slowly, so that later dates
queue up while it runs.
"""

from __future__ import annotations

import os
import time

from airflow.sdk import Asset, dag, task

from c360.pipeline.assets import DAG_START_DATE, per_date_schedule

RAW = Asset(name="probe.raw", uri="c360://probe/raw")


# max_active_runs=1 like c360_ingest: nights land one after another, in the order they were started
@dag(dag_id="probe_ingest", schedule=None, start_date=DAG_START_DATE, catchup=False, max_active_runs=1)
def probe_ingest():
    @task(outlets=[RAW])
    def land(**context):
        from c360.pipeline import tasks

        tasks.publish_run_date(context, tasks.run_date_from_context(context))

    land()


@dag(dag_id="probe_transform", schedule=per_date_schedule(RAW), start_date=DAG_START_DATE, catchup=False,
     max_active_runs=1)
def probe_transform():
    @task
    def build(**context):
        from c360.pipeline import tasks

        day = tasks.run_date_from_context(context)
        time.sleep(4)
        with open(os.environ["C360_PROBE_LOG"], "a") as f:
            f.write(f"{day.isoformat()}\n")

    build()


probe_ingest()
probe_transform()
