"""
### c360_ingest: landing zone -> warehouse raw schema

For logical date **D** (the run starts once D is over), load the landing zone's `dt=D` files and any
earlier files that arrived late (or, on a first run, all history) into `raw.*` of the DuckDB warehouse.

* `wait_for_transactions` waits (bounded) for `transactions/dt=D/`; it fails naming the missing folder.
* `ingest_<entity>` validates every row: loaded into `raw.<table>` or quarantined into `raw.quarantine`
  with a reason. Reruns replace what a file loaded before; they never duplicate.
* `check_reconciliation` fails if any file's `landed != loaded + quarantined` (`raw.ingest_audit`).

Each `ingest_<entity>` task updates the Asset `raw.<table>`; the transform DAG schedules on them.
Every task that opens the DuckDB warehouse, reader or writer, takes the pool `warehouse` (one slot). Landing contract: `docs/landing_contract.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from c360.config import dag_parse_settings
from c360.pipeline.assets import DAG_START_DATE, RAW_ASSETS, WAREHOUSE_POOL

# The sensor's poke interval and timeout are operator arguments, fixed when Airflow parses this file: only these
# two settings are read here (not every setting, so a bad unrelated variable fails its task, not this import).
# The wait itself is enforced at run time by tasks.transactions_landed with the settings of that moment; the
# timeout below is only the backstop.
sensor = dag_parse_settings()

default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
}


@dag(
    dag_id="c360_ingest",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=DAG_START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["c360", "ingest"],
    doc_md=__doc__,
)
def c360_ingest():
    @task.sensor(
        poke_interval=sensor.landing_poke_seconds,
        timeout=sensor.landing_wait_seconds + sensor.landing_poke_seconds,
        mode="poke",
        retries=0,
    )
    def wait_for_transactions(ds=None, ti=None):
        from c360.pipeline import tasks

        return tasks.transactions_landed(ds, started_at=ti.start_date if ti else None)

    @task(pool=WAREHOUSE_POOL)
    def ingest_entity(entity: str, **context) -> dict:
        from c360.pipeline import tasks

        return tasks.ingest_entity(entity, context)

    @task(pool=WAREHOUSE_POOL, retries=0)
    def check_reconciliation(ds=None) -> dict:
        from c360.pipeline import tasks

        return tasks.check_reconciliation(ds)

    waiting = wait_for_transactions()
    loads = [
        ingest_entity.override(task_id=f"ingest_{name}", outlets=[asset])(name)
        for name, asset in RAW_ASSETS.items()
    ]
    check = check_reconciliation()
    waiting >> loads[0]
    for upstream, downstream in zip(loads, loads[1:], strict=False):
        upstream >> downstream  # one writer at a time even where the pool has more slots
    loads[-1] >> check


c360_ingest()
