"""
### c360_transform: raw -> dbt marts and feature store

Runs when the ingestion DAG has updated the raw Assets (or for a logical date in `airflow dags test`).
The data date comes from the triggering Asset events (`run_date` in their extra), or the logical date.

* `dbt_build`: `dbt build` of `dbt_project/` for the date: staging, intermediate (sessions, identity,
  order lines), marts (`fct_orders`, `fct_sessions`, `dim_products`, …), the feature-store snapshot
  `as_of_date = D` and the labels whose horizon has closed, plus every data test. A failing test fails the task.
  What reads the night's scores (`customer_360`, the score marts, the segments) is left to `c360_score`, so each
  model is built once a night, after the scores it needs.
* `export_features`: copies the snapshot and new label partitions to Parquet (partitioned by `as_of_date`) for
  Spark, atomically; updates the Asset `feature_store.customer_features`.

SQL lives in dbt; see `docs/feature_store.md` and `docs/analysts.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from c360.pipeline.assets import (
    DAG_START_DATE,
    FEATURE_STORE_ASSET,
    MARTS_ASSET,
    RAW_ASSETS,
    WAREHOUSE_POOL,
    per_date_schedule,
)

default_args = {
    "owner": "data-platform",
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
}


@dag(
    dag_id="c360_transform",
    schedule=per_date_schedule(*RAW_ASSETS.values()),
    start_date=DAG_START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["c360", "dbt"],
    doc_md=__doc__,
)
def c360_transform():
    @task(pool=WAREHOUSE_POOL, outlets=[MARTS_ASSET], execution_timeout=timedelta(hours=2))
    def dbt_build(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.dbt_build(context)

    @task(pool=WAREHOUSE_POOL, outlets=[FEATURE_STORE_ASSET])
    def export_features(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.export_features(context)

    dbt_build() >> export_features()


c360_transform()
