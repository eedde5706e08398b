"""The callables behind the Airflow tasks. DAG files import this module inside tasks, never at parse time."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)


def _day(ds: str | date) -> date:
    return ds if isinstance(ds, date) else date.fromisoformat(str(ds)[:10])


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


def ingest_entity(entity: str, ds: str) -> dict:
    from c360.ingest.load import ingest
    from c360.summary import print_ingest_summary

    result = ingest(_day(ds), get_settings(), [entity]).as_dict()
    print_ingest_summary(result)
    return result["entities"][entity]


def check_reconciliation(ds: str) -> dict:
    """Every file loaded by this run: landed = loaded + quarantined, and the raw tables agree with the audit."""
    from c360.ingest.reconcile import reconcile

    report = reconcile(get_settings(), _day(ds))
    log.info("Reconciliation for %s: %s", ds, report)
    return report
