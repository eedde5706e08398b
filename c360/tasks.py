"""The callables behind the Airflow tasks. DAG files import this module inside tasks, never at parse time."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)


def _day(ds: str | date) -> date:
    return ds if isinstance(ds, date) else date.fromisoformat(str(ds)[:10])


def run_date_from_context(context) -> date:
    """The data date a run works on.

    A manual trigger may say {"run_date": "YYYY-MM-DD"} in its conf; an Asset-triggered run takes the date its
    upstream run published in the asset events' extra; otherwise (scheduled or `airflow dags test`) the logical date.
    """
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    if conf.get("run_date"):
        return _day(conf["run_date"])
    events = context.get("triggering_asset_events") or {}
    dates = [_day(e.extra["run_date"]) for evs in events.values() for e in evs if (e.extra or {}).get("run_date")]
    if dates:
        return max(dates)
    return _day(context["logical_date"].date().isoformat())


def publish_run_date(context, day: date) -> None:
    """Attach the data date to every Asset event this task emits, for downstream DAGs."""
    outlet_events = context.get("outlet_events")
    for asset in context["task"].outlets or []:
        outlet_events[asset].extra = {"run_date": day.isoformat()}


def transactions_landed(ds: str, started_at: datetime | None = None) -> bool:
    """Sensor poke: is transactions/dt=ds there? Fails with a clear message once the wait is over."""
    from c360.ingest.contract import ENTITIES
    from c360.ingest.landing import LandingPartitionMissing, partition_ready

    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    day = _day(ds)
    if partition_ready(storage, "transactions", day):
        return True
    waited = (datetime.now(UTC) - started_at).total_seconds() if started_at else 0.0
    if waited + settings.landing_poke_seconds > settings.landing_wait_seconds:
        raise LandingPartitionMissing.for_entity(storage, ENTITIES["transactions"], day, waited)
    log.info("Waiting for %s (%.0f of %d s)", storage.uri_of(f"transactions/dt={day}/"), waited,
             settings.landing_wait_seconds)
    return False


def ingest_entity(entity: str, context) -> dict:
    from c360.ingest.load import ingest
    from c360.summary import print_ingest_summary

    day = run_date_from_context(context)
    result = ingest(day, get_settings(), [entity]).as_dict()
    print_ingest_summary(result)
    publish_run_date(context, day)
    return result["entities"][entity]


def dbt_build(context) -> dict:
    """`dbt build` of the whole project for the run date (marts, feature-store snapshot, data tests)."""
    from c360 import transform

    day = run_date_from_context(context)
    result = transform.build(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "seconds": round(result.elapsed_seconds, 1), "nodes": len(result.nodes)}


def export_features(context) -> dict:
    """Copy the run date's feature snapshot (and newly observable labels) to Parquet for Spark."""
    from c360 import transform

    day = run_date_from_context(context)
    result = transform.export_feature_parquet(day, get_settings())
    publish_run_date(context, day)
    return {t: {str(d): rows for d, (_, rows) in parts.items()} for t, parts in result.written.items()}


def check_reconciliation(ds: str) -> dict:
    """Every file loaded by this run: landed = loaded + quarantined, and the raw tables agree with the audit."""
    from c360.ingest.reconcile import reconcile

    report = reconcile(get_settings(), _day(ds))
    log.info("Reconciliation for %s: %s", ds, report)
    return report


def dbt_build_scores(context) -> dict:
    """Load the night's scores and build everything downstream of them (score marts, customer_360, segments)."""
    from c360 import transform
    from c360.scores_load import load_scores

    day = run_date_from_context(context)
    loaded = load_scores(day, get_settings())
    result = transform.build_scores(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "loaded": loaded, "seconds": round(result.elapsed_seconds, 1)}
