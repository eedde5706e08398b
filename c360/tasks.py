"""The callables behind the Airflow tasks. DAG files import this module inside tasks, never at parse time."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, date, datetime

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stage(day: date, name: str):
    """Time a task's work into the night's stage log (read by the run report)."""
    from c360.report.stages import timed_stage

    with timed_stage(get_settings(), day, name) as st:
        yield st


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
    with _stage(day, f"ingest {entity}") as st:
        result = ingest(day, get_settings(), [entity]).as_dict()
        st.rows = result["entities"][entity]["landed"]
    print_ingest_summary(result)
    publish_run_date(context, day)
    return result["entities"][entity]


def dbt_build(context) -> dict:
    """`dbt build` of the whole project for the run date (marts, feature-store snapshot, data tests)."""
    from c360 import transform

    day = run_date_from_context(context)
    with _stage(day, "dbt"):
        result = transform.build(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "seconds": round(result.elapsed_seconds, 1), "nodes": len(result.nodes)}


def export_features(context) -> dict:
    """Copy the run date's feature snapshot (and newly observable labels) to Parquet for Spark."""
    from c360 import transform

    day = run_date_from_context(context)
    with _stage(day, "feature export") as st:
        result = transform.export_feature_parquet(day, get_settings())
        st.rows = sum(rows for _, rows in result.written.get("customer_features", {}).values())
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
    with _stage(day, "dbt scores + segments"):
        loaded = load_scores(day, get_settings())
        result = transform.build_scores(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "loaded": loaded, "seconds": round(result.elapsed_seconds, 1)}


def ensure_champions(context) -> dict:
    """First run on a registry: train the models without a @champion (after backfilling training snapshots)."""
    from c360 import modeling

    day = run_date_from_context(context)
    if not modeling.missing_champions():
        return {"trained": []}
    with _stage(day, "train (no champion yet)") as st:
        result = modeling.ensure_champions(day)
        if result.get("notes"):  # e.g. "recommender not trained: no product interactions" (not an error)
            st.extra["note"] = "; ".join(result["notes"])
        return result


def prepare_training_snapshots(context) -> list[str]:
    """Backfill (and export) the monthly feature snapshots the training needs and the warehouse lacks."""
    from c360 import modeling

    day = run_date_from_context(context)
    return [d.isoformat() for d in modeling.prepare_training_snapshots(day)]


def train_models(context) -> list:
    """The weekly training: train all models on the exported snapshots, register, promote by the gates."""
    from c360 import modeling

    day = run_date_from_context(context)
    with _stage(day, "train") as st:
        results = modeling.train(day)
        notes = [r["note"] for r in results if r.get("note")]
        if notes:
            st.extra["note"] = "; ".join(notes)
    publish_run_date(context, day)
    return [{k: r.get(k) for k in ("model", "version", "promoted", "champion_version", "gates", "note")
             if k in r} for r in results]


def score(context) -> dict:
    """Score every customer of the date's snapshot with the @champion models (Spark job, child process)."""
    from c360 import modeling

    day = run_date_from_context(context)
    with _stage(day, "score") as st:
        result = modeling.score(day)
        if result.get("note"):  # a transactions-only shop: churn and CLV scored, no recommendations
            st.extra["note"] = result["note"]
    publish_run_date(context, day)
    return result


def monitor(context) -> dict:
    """PSI of key features and scores against the training snapshot, recorded in monitoring.psi."""
    from c360.monitoring import run_monitoring

    day = run_date_from_context(context)
    with _stage(day, "monitor") as st:
        result = run_monitoring(get_settings(), day)
        st.rows = len(result.rows)
    return {"reference_date": str(result.reference_date), "values": len(result.rows)}


def export(context) -> dict:
    """Consent-aware segment exports for the date (held back, as a skipped task, when drift says hold)."""
    from airflow.exceptions import AirflowSkipException

    from c360.exports.export import ExportHeld, export_segments
    from c360.report.stages import record_stage

    day = run_date_from_context(context)
    try:
        with _stage(day, "export") as st:
            manifest = export_segments(day, get_settings())
            st.rows = sum(int(seg.get("rows") or 0) for seg in manifest["segments"].values())
    except ExportHeld as exc:
        record_stage(get_settings(), day, "export", 0.0, "skipped", note=str(exc))
        log.error("%s", exc)
        raise AirflowSkipException(str(exc)) from exc
    publish_run_date(context, day)
    return {"export_id": manifest["export_id"], "segments": len(manifest["segments"])}


def report(context) -> dict:
    """The night's run report (HTML + JSON); its path is in the task log and the return value."""
    from c360.report import build_report

    day = run_date_from_context(context)
    paths = build_report(day, get_settings())
    print(f"Run report for {day}: {paths.html}")
    return {"html": str(paths.html), "json": str(paths.json)}
