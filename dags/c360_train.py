"""
### c360_train: weekly training of the churn, CLV and recommender models

Weekly by default (cron `C360_TRAIN_SCHEDULE`, default Sundays 03:00 UTC) and triggerable by hand
(`airflow dags trigger c360_train -c '{"run_date": "YYYY-MM-DD"}'`). It reads the feature store
(Asset `feature_store.customer_features`, declared as its inlet) but is not triggered by every nightly
update of it: retraining nightly would cost minutes per night for no gain.

* `prepare_snapshots`: backfills the monthly feature snapshots the warehouse lacks (and the labels now
  observable) and exports them to Parquet (warehouse pool).
* `train`: runs the Spark training job (`spark_jobs/train.py`): fit, evaluate against the
  baselines and the current champion on the same time-based holdout, log to MLflow, register each model
  as `@challenger` and move `@champion` only when the gates pass. Every alias move is in the deployments
  audit; `c360 models rollback --model <name>` restores the previous champion.

Extra training arguments: `C360_TRAIN_ARGS` (default `--train-snapshots 3`). The recommender keeps the
ALS parameters of its champion; add `--rec-grid small` to re-tune them (docs/models.md).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from c360.config import dag_parse_settings
from c360.pipeline.assets import DAG_START_DATE, FEATURE_STORE_ASSET, MODELS_ASSET, WAREHOUSE_POOL

default_args = {
    "owner": "data-science",
    "retries": 0,
}


@dag(
    dag_id="c360_train",
    # a schedule is needed when Airflow parses the file: the one setting read here (Settings.train_schedule)
    schedule=CronTriggerTimetable(dag_parse_settings().train_schedule, timezone="UTC"),
    start_date=DAG_START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["c360", "ml"],
    doc_md=__doc__,
)
def c360_train():
    # the snapshot backfill writes to the warehouse: the pool keeps it away from the nightly writers
    @task(pool=WAREHOUSE_POOL, inlets=[FEATURE_STORE_ASSET], execution_timeout=timedelta(hours=1))
    def prepare_snapshots(**context) -> list:
        from c360.pipeline import tasks

        return tasks.prepare_training_snapshots(context)

    # Spark reads only the Parquet copies: no warehouse slot held for the (long) training
    @task(outlets=[MODELS_ASSET], execution_timeout=timedelta(hours=4))
    def train(**context) -> list:
        from c360.pipeline import tasks

        return tasks.train_models(context)

    prepare_snapshots() >> train()


c360_train()
