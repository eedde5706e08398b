"""The callables behind the Airflow tasks. DAG files import this module inside tasks, never at parse time."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
from datetime import UTC, date, datetime

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)

# Failures worth an Airflow retry: the warehouse lock held by another writer, S3 throttling or a dropped
# connection, a full disk being freed. Matched in the text of errors whose type alone does not say (dbt, Spark).
TRANSIENT_TEXT = re.compile(
    r"\block(ed)?\b|could not set lock|throttl|slow ?down|timed? ?out|timeout|connection (reset|refused|aborted)|temporar|"
    r"no space left|too many requests|service unavailable|\b503\b|out of memory|OutOfMemory", re.IGNORECASE)


def is_deterministic(exc: BaseException) -> bool:
    """True for failures a retry cannot fix (the same data and code fail the same way): data tests, contract
    and reconciliation errors, unreadable files, bad segment rules, a missing champion. Everything else, and
    anything whose text names a lock, a timeout, throttling or a full disk, keeps the task's retries."""
    from c360.ingest.landing import LandingPartitionMissing
    from c360.ingest.load import QuarantineRateExceeded
    from c360.ingest.readers import UnreadableFile
    from c360.ingest.reconcile import ReconciliationError
    from c360.marketing.exports.export import ExportError
    from c360.marketing.exports.query import ExportInputError
    from c360.pipeline.modeling import JobFailed
    from c360.pipeline.transform import DbtRunError, SnapshotMissing
    from c360.pipeline.warehouse import WarehouseLocked

    text = str(exc)
    if isinstance(exc, WarehouseLocked) or TRANSIENT_TEXT.search(text):
        return False
    if isinstance(exc, DbtRunError):
        return True  # a failed data test, a compile or contract error: the same on every try
    if isinstance(exc, JobFailed):  # a Spark child: deterministic only when it died of a known data/model error
        return bool(re.search(r"ScoringError|SegmentConfigError|FileNotFoundError|gate", text))
    deterministic = (SnapshotMissing, ReconciliationError, UnreadableFile, LandingPartitionMissing, ExportInputError, ExportError,
                     QuarantineRateExceeded,
                     ValueError, TypeError, KeyError, LookupError, AttributeError, NotImplementedError,
                     FileNotFoundError)
    return isinstance(exc, deterministic)


def fail_fast_on_deterministic_errors(fn):
    """Task callables: a deterministic failure raises AirflowFailException (no retry: the night fails within
    seconds, naming the error); other errors propagate and Airflow retries them (DAG default_args)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ti = next((a.get("ti") or a.get("task_instance") for a in (*args, *kwargs.values())
                   if isinstance(a, dict) and (a.get("ti") or a.get("task_instance"))), None)
        token = _task_id.set(getattr(ti, "task_id", None))
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if type(exc).__module__.startswith("airflow") or not is_deterministic(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            log.error("%s failed with a deterministic error (not retried): %s", fn.__name__, exc)
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        finally:
            _task_id.reset(token)

    return wrapper


# The Airflow task running now: stage records carry it, so `c360 nightly` pairs each record with its task.
_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("c360_task_id", default=None)


def _task_extra() -> dict:
    task_id = _task_id.get()
    return {"task_id": task_id} if task_id else {}


@contextlib.contextmanager
def _stage(day: date, name: str):
    """Time a task's work into the night's stage log (read by the run report)."""
    from c360.pipeline.report.stages import timed_stage

    with timed_stage(get_settings(), day, name) as st:
        st.extra.update(_task_extra())
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
    # an Asset-triggered run of a partitioned schedule (c360.pipeline.assets.per_date_schedule) is for one date only
    partition_key = getattr(context.get("dag_run"), "partition_key", None)
    if partition_key:
        return _day(partition_key)
    events = context.get("triggering_asset_events") or {}
    dates = [_day(e.extra["run_date"]) for evs in events.values() for e in evs if (e.extra or {}).get("run_date")]
    if dates:
        return max(dates)
    return _day(context["logical_date"].date().isoformat())


def publish_run_date(context, day: date) -> None:
    """Attach the data date to every Asset event this task emits, for downstream DAGs.

    The date is also the event's partition key: downstream DAGs scheduled with c360.pipeline.assets.per_date_schedule
    get one run per date, instead of one run for all events queued meanwhile (which took only the latest date).
    """
    outlet_events = context.get("outlet_events")
    for asset in context["task"].outlets or []:
        outlet_events[asset].extra = {"run_date": day.isoformat()}
        outlet_events[asset].add_partitions(day.isoformat())


@fail_fast_on_deterministic_errors
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


@fail_fast_on_deterministic_errors
def ingest_entity(entity: str, context) -> dict:
    from c360.ingest.load import ingest
    from c360.pipeline.summary import print_ingest_summary

    day = run_date_from_context(context)
    with _stage(day, f"ingest {entity}") as st:
        result = ingest(day, get_settings(), [entity]).as_dict()
        st.rows = result["entities"][entity]["landed"]
    print_ingest_summary(result)
    publish_run_date(context, day)
    return result["entities"][entity]


@fail_fast_on_deterministic_errors
def dbt_build(context) -> dict:
    """`dbt build` of the whole project for the run date (marts, feature-store snapshot, data tests)."""
    from c360.pipeline import transform

    day = run_date_from_context(context)
    with _stage(day, "dbt"):
        result = transform.build(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "seconds": round(result.elapsed_seconds, 1), "nodes": len(result.nodes)}


@fail_fast_on_deterministic_errors
def export_features(context) -> dict:
    """Copy the run date's feature snapshot (and newly observable labels) to Parquet for Spark."""
    from c360.pipeline import transform

    day = run_date_from_context(context)
    with _stage(day, "feature export") as st:
        result = transform.export_feature_parquet(day, get_settings())
        st.rows = sum(rows for _, rows in result.written.get("customer_features", {}).values())
    publish_run_date(context, day)
    return {t: {str(d): rows for d, (_, rows) in parts.items()} for t, parts in result.written.items()}


@fail_fast_on_deterministic_errors
def check_reconciliation(ds: str) -> dict:
    """Every file loaded by this run: landed = loaded + quarantined, and the raw tables agree with the audit."""
    from c360.ingest.reconcile import reconcile

    report = reconcile(get_settings(), _day(ds))
    log.info("Reconciliation for %s: %s", ds, report)
    return report


@fail_fast_on_deterministic_errors
def dbt_build_scores(context) -> dict:
    """Build everything downstream of the night's scores (score marts, customer_360, segments): dbt reads the
    scoring job's Parquet directly (raw.scores / raw.recommendations are views over it)."""
    from c360.pipeline import modeling, transform

    day = run_date_from_context(context)
    with _stage(day, "dbt scores + segments"):
        from c360.pipeline.transform import load_segment_definitions

        load_segment_definitions()  # a bad segments.yml fails here, before any dbt command
        loaded = modeling.check_scored(day, get_settings())
        result = transform.build_scores(day, get_settings())
    publish_run_date(context, day)
    return {"run_date": day.isoformat(), "loaded": loaded, "seconds": round(result.elapsed_seconds, 1)}


@fail_fast_on_deterministic_errors
def ensure_champions(context) -> dict:
    """First run on a registry: train the models without a @champion (after backfilling training snapshots)."""
    from c360.pipeline import modeling

    day = run_date_from_context(context)
    if not modeling.missing_champions():
        return {"trained": []}
    with _stage(day, "train (no champion yet)") as st:
        result = modeling.ensure_champions(day)
        if result.get("notes"):  # e.g. "recommender not trained: no product interactions" (not an error)
            st.extra["note"] = "; ".join(result["notes"])
        return result


@fail_fast_on_deterministic_errors
def prepare_training_snapshots(context) -> list[str]:
    """Backfill (and export) the monthly feature snapshots the training needs and the warehouse lacks."""
    from c360.pipeline import modeling

    day = run_date_from_context(context)
    return [d.isoformat() for d in modeling.prepare_training_snapshots(day)]


@fail_fast_on_deterministic_errors
def train_models(context) -> list:
    """The weekly training: train all models on the exported snapshots, register, promote by the gates."""
    from c360.pipeline import modeling

    day = run_date_from_context(context)
    with _stage(day, "train") as st:
        results = modeling.train(day)
        notes = [r["note"] for r in results if r.get("note")]
        if notes:
            st.extra["note"] = "; ".join(notes)
    publish_run_date(context, day)
    return [{k: r.get(k) for k in ("model", "version", "promoted", "champion_version", "gates", "note")
             if k in r} for r in results]


@fail_fast_on_deterministic_errors
def score(context) -> dict:
    """Score every customer of the date's snapshot with the @champion models (Spark job, child process)."""
    from c360.ingest import volume
    from c360.pipeline import modeling

    day = run_date_from_context(context)
    volume.skip_task_if_held(day, "score")  # a night with 10x or 0.1x the usual rows is not scored unreviewed
    with _stage(day, "score") as st:
        result = modeling.score(day)
        if result.get("note"):  # a transactions-only shop: churn and CLV scored, no recommendations
            st.extra["note"] = result["note"]
    publish_run_date(context, day)
    return result


@fail_fast_on_deterministic_errors
def monitor(context) -> dict:
    """PSI of key features and scores against the training snapshot, recorded in monitoring.psi."""
    from c360.pipeline.monitoring import run_monitoring

    day = run_date_from_context(context)
    with _stage(day, "monitor") as st:
        result = run_monitoring(get_settings(), day)
        st.rows = len(result.rows)
    return {"reference_date": str(result.reference_date), "values": len(result.rows)}


@fail_fast_on_deterministic_errors
def export(context) -> dict:
    """Consent-aware segment exports for the date (held back, as a skipped task, when drift or volume says hold)."""
    from airflow.exceptions import AirflowSkipException

    from c360.marketing.exports.export import ExportHeld, export_segments
    from c360.pipeline.report.stages import record_stage

    day = run_date_from_context(context)
    try:
        with _stage(day, "export") as st:
            manifest = export_segments(day, get_settings())
            st.rows = sum(int(seg.get("rows") or 0) for seg in manifest["segments"].values())
    except ExportHeld as exc:
        record_stage(get_settings(), day, "export", 0.0, "skipped", note=str(exc), **_task_extra())
        log.error("%s", exc)
        raise AirflowSkipException(str(exc)) from exc
    publish_run_date(context, day)
    return {"export_id": manifest["export_id"], "segments": len(manifest["segments"])}


@fail_fast_on_deterministic_errors  # an invalid destinations file (ValueError) fails at once; SyncError retries
def sync_destinations(context) -> dict:
    """Send the night's segment changes to the destinations of C360_DESTINATIONS_FILE (docs/destinations.md).

    Skipped when no destination is configured. A destination that does not acknowledge fails the task after its
    retry budget; Airflow's retry (or `c360 sync --date D`) sends only what was not acknowledged."""
    from airflow.sdk.exceptions import AirflowSkipException

    from c360.marketing.activation.destinations import SyncError, load_destinations
    from c360.marketing.segments import load_segments

    settings = get_settings()
    segments = load_segments()
    destinations = load_destinations(settings, segments)  # an invalid file fails here (ValueError: not retried)
    if not destinations:
        raise AirflowSkipException(f"no destination configured ({settings.destinations_file} does not exist)")
    from c360.marketing.activation.sync import sync_date

    day = run_date_from_context(context)
    with _stage(day, "sync") as st:
        result = sync_date(day, settings, destinations, segments)
        st.rows = sum(s.sent for s in result.segments)
    if result.failed:
        raise SyncError("; ".join(s.error for s in result.failed))
    return result.as_dict()


@fail_fast_on_deterministic_errors
def report(context) -> dict:
    """The night's run report (HTML + JSON); its path is in the task log and the return value."""
    from c360.pipeline.report import build_report

    day = run_date_from_context(context)
    paths = build_report(day, get_settings())
    print(f"Run report for {day}: {paths.html}")
    return {"html": str(paths.html), "json": str(paths.json)}
