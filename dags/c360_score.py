"""
### c360_score: champions -> scores -> segments -> drift check -> exports -> run report

Runs when the transform DAG has published the night's feature snapshot (Asset
`feature_store.customer_features`), for the date carried in the Asset event (or the logical date in
`airflow dags test`).

* `ensure_champions`: on a registry without a `@champion` (a fresh machine), backfills monthly feature
  snapshots and trains the missing models first (quick settings, `C360_BOOTSTRAP_TRAIN_ARGS`); otherwise
  it does nothing. Regular retraining is the weekly `c360_train` DAG.
* `score`: the Spark scoring job (`spark_jobs/score.py`) scores every customer of the D snapshot with the
  champions: churn probability and decile, P(alive), predicted value and decile, top-N recommendations;
  Parquet under `C360_SCORES_DIR/{scores,recommendations}/dt=D`, atomically. Refuses when a champion or a
  signature column is missing.
* `dbt_build_scores`: checks they were published, then builds (dbt reads the Parquet in place) `customer_scores`,
  `customer_recommendations`,
  `customer_360` (with scores), `segment_members` and `segment_changes` (segments.yml).
* `monitor`: population stability (PSI) of key features and scores against the training snapshot,
  recorded in `monitoring.psi`.
* `export`: per segment a CRM CSV (email only where consented), Parquet and entered/exited deltas under
  `EXPORT_URI/dt=D/`, manifest last. **Skipped** (with the reason in the log and the report) when the drift
  check says hold (`C360_PSI_HOLD`); `c360 segments export --date D --force` releases it.
* `report`: the night's HTML + JSON report under `C360_REPORTS_DIR`.
* `sync`: sends the night's entered/exited members of the configured segments to the destinations of
  `C360_DESTINATIONS_FILE` (hashed emails, consenting members only, resumable: `activation.sync_log`).
  **Skipped** when no destination is configured or the export was held; runs after the report, so a destination
  outage never holds the report back. Docs: `docs/destinations.md`.

Docs: `docs/models.md` (scoring), `docs/exports.md`, `docs/report.md`, runbooks in `docs/runbooks.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from c360.pipeline.assets import (
    DAG_START_DATE,
    EXPORTS_ASSET,
    FEATURE_STORE_ASSET,
    MODELS_ASSET,
    SCORES_ASSET,
    SEGMENTS_ASSET,
    WAREHOUSE_POOL,
    per_date_schedule,
)

default_args = {
    "owner": "data-science",
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
}


@dag(
    dag_id="c360_score",
    schedule=per_date_schedule(FEATURE_STORE_ASSET),
    start_date=DAG_START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["c360", "ml", "exports"],
    doc_md=__doc__,
)
def c360_score():
    # Every task here that opens the DuckDB warehouse takes the pool, readers too: DuckDB lets one process write or
    # several read, never both, so a reader of this run would make the next date's ingest fail on the lock (and wait
    # its 5-minute retry) when the scheduler runs them side by side. ensure_champions writes training snapshots;
    # score reads the volume check.
    @task(pool=WAREHOUSE_POOL, outlets=[MODELS_ASSET], execution_timeout=timedelta(hours=3), retries=0)
    def ensure_champions(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.ensure_champions(context)

    @task(pool=WAREHOUSE_POOL, outlets=[SCORES_ASSET], execution_timeout=timedelta(hours=2))
    def score(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.score(context)

    @task(pool=WAREHOUSE_POOL, outlets=[SEGMENTS_ASSET], execution_timeout=timedelta(hours=1))
    def dbt_build_scores(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.dbt_build_scores(context)

    @task(pool=WAREHOUSE_POOL)
    def monitor(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.monitor(context)

    @task(pool=WAREHOUSE_POOL, outlets=[EXPORTS_ASSET])
    def export(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.export(context)

    # the report also describes a night whose exports were held back (export skipped)
    @task(pool=WAREHOUSE_POOL, trigger_rule="none_failed")
    def report(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.report(context)

    # after the report (a destination outage must not hold it back) and only when the export ran: a held night is
    # not synced either. In the warehouse pool: it writes activation.sync_log.
    @task(pool=WAREHOUSE_POOL, execution_timeout=timedelta(hours=2))
    def sync(**context) -> dict:
        from c360.pipeline import tasks

        return tasks.sync_destinations(context)

    exported, synced = export(), sync()
    ensure_champions() >> score() >> dbt_build_scores() >> monitor() >> exported >> report() >> synced
    exported >> synced


c360_score()
