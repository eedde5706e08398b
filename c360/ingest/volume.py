"""Volume checks: each entity's landed rows for the run date against the median of the previous nights. A count
outside the bounds holds the night's scoring and exports (like the drift hold) until someone looks or overrides.

The rule, per entity, for run date D (settings in c360/config.py, `C360_VOLUME_*`):
  * the count is the `landed_rows` of the files under `<entity>/dt=D/` (raw.ingest_audit, by partition date, so a
    first night that catches up on all history still judges D's own partition, never the whole catch-up load);
  * the history is the previous `volume_lookback_days` nights: the dates before D on which anything landed. An
    entity with no file on such a night counts 0 there, so a feed that usually lands has a median above 0 and a
    missing or empty partition on D is "low"; a feed that lands on fewer than half the nights has a median of 0
    and is not judged;
  * fewer than `volume_min_history` prior nights: `not_enough_history`; a median below `volume_min_rows`:
    `too_few_rows` (a handful of rows a night swings by chance); neither holds;
  * otherwise the expected range is [median x min_ratio, median x max_ratio], bounds included: below it `low`,
    above it `high`. Entities that never landed in the window and not on D are not checked.
A `low` or `high` entity holds scoring and exports of D unless `volume_override_date` is D.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from c360.config import Settings, get_settings
from c360.pipeline.monitoring import HoldDecision

log = logging.getLogger(__name__)

VOLUME_TABLE = "monitoring.volume_checks"
OUT_OF_RANGE = ("low", "high")
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS monitoring;
CREATE TABLE IF NOT EXISTS {VOLUME_TABLE} (
    as_of_date DATE NOT NULL,      -- the run date whose partition was counted
    entity VARCHAR NOT NULL,
    landed BIGINT NOT NULL,        -- rows landed under <entity>/dt=as_of_date/ (valid + quarantined)
    files INTEGER NOT NULL,        -- files under that partition (0 = nothing landed)
    median DOUBLE,                 -- median landed rows of the previous nights (0 for a night without files)
    low DOUBLE,                    -- expected range, bounds included (null when not judged)
    high DOUBLE,
    history INTEGER NOT NULL,      -- prior nights in the window
    status VARCHAR NOT NULL,       -- ok | low | high | not_enough_history | too_few_rows
    message VARCHAR NOT NULL,
    checked_at TIMESTAMPTZ
)"""


@dataclass(frozen=True)
class VolumeCheck:
    as_of_date: date
    entity: str
    landed: int
    files: int
    median: float | None
    low: float | None
    high: float | None
    history: int
    status: str
    message: str

    @property
    def out_of_range(self) -> bool:
        return self.status in OUT_OF_RANGE

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "as_of_date": self.as_of_date.isoformat()}


def _n(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _bounds(settings: Settings) -> tuple[float, float]:
    lo, hi = settings.volume_min_ratio, settings.volume_max_ratio
    if not 0 <= lo <= 1 <= hi:
        raise ValueError(f"C360_VOLUME_MIN_RATIO={lo} and C360_VOLUME_MAX_RATIO={hi}: need 0 <= min <= 1 <= max")
    return lo, hi


# ------------------------------------------------------------------------------------------------ the rule


def check_volumes(counts: Iterable[tuple[str, date, int, int]], day: date, settings: Settings) -> list[VolumeCheck]:
    """The checks for `day` from (entity, partition date, files, landed rows) tuples (any order; dates after `day`
    are ignored). Pure: no I/O. One VolumeCheck per entity that landed on `day` or within the window."""
    min_ratio, max_ratio = _bounds(settings)
    by_entity: dict[str, dict[date, tuple[int, int]]] = {}
    nights: set[date] = set()
    for entity, dt, files, landed in counts:
        if dt > day:
            continue
        prev = by_entity.setdefault(entity, {}).get(dt, (0, 0))
        by_entity[entity][dt] = (prev[0] + int(files), prev[1] + int(landed or 0))
        if dt < day:
            nights.add(dt)
    window = sorted(nights)[-settings.volume_lookback_days:] if settings.volume_lookback_days > 0 else []
    out = []
    for entity in sorted(by_entity):
        dates = by_entity[entity]
        history = [dates.get(n, (0, 0))[1] for n in window]
        files, landed = dates.get(day, (0, 0))
        if files == 0 and not any(history):
            continue  # never landed in the window (an optional entity the shop does not send): not checked
        out.append(_judge(entity, day, files, landed, history, settings, min_ratio, max_ratio))
    return out


def _judge(entity: str, day: date, files: int, landed: int, history: list[int], settings: Settings,
           min_ratio: float, max_ratio: float) -> VolumeCheck:
    count = (f"{landed:,} row{'' if landed == 1 else 's'} landed under {entity}/dt={day}/" if files
             else f"nothing landed under {entity}/dt={day}/ (no file)")
    if len(history) < settings.volume_min_history:
        return VolumeCheck(day, entity, landed, files, statistics.median(history) if history else None, None, None,
                           len(history), "not_enough_history",
                           f"{entity}: {count}; not judged: {len(history)} earlier night(s), the check needs "
                           f"C360_VOLUME_MIN_HISTORY={settings.volume_min_history}")
    median = float(statistics.median(history))
    where = f"the median of the previous {len(history)} nights"
    if median < settings.volume_min_rows:
        return VolumeCheck(day, entity, landed, files, median, None, None, len(history), "too_few_rows",
                           f"{entity}: {count}; not judged: {where} is {_n(median)} rows, below "
                           f"C360_VOLUME_MIN_ROWS={settings.volume_min_rows}")
    low, high = median * min_ratio, median * max_ratio
    status = "low" if landed < low else "high" if landed > high else "ok"
    expected = f"expected {_n(low)}..{_n(high)} ({min_ratio:g}..{max_ratio:g} x {where}, {_n(median)})"
    verdict = {"ok": "within", "low": "BELOW", "high": "ABOVE"}[status]
    return VolumeCheck(day, entity, landed, files, median, low, high, len(history), status,
                       f"{entity}: {count}, {verdict} the range: {expected}")


def decide(checks: Iterable[VolumeCheck], day: date, settings: Settings) -> HoldDecision:
    """Hold scoring and exports of `day` when an entity is out of range, unless C360_VOLUME_OVERRIDE_DATE is `day`."""
    checks = list(checks)
    offenders = tuple(c for c in checks if c.out_of_range)
    listed = tuple({"entity": c.entity, "landed": c.landed, "low": c.low, "high": c.high, "median": c.median,
                    "status": c.status} for c in offenders)
    if not checks:
        return HoldDecision(False, f"no volume check for {day} (nothing in raw.ingest_audit): not held")
    if not offenders:
        judged = [c.entity for c in checks if c.status == "ok"]
        return HoldDecision(False, f"volume for {day}: within range for {', '.join(judged) or 'no entity'}"
                            + "".join(f"; {c.message}" for c in checks if c.status != "ok"), None,
                            "ok" if judged else "not_checked")
    what = "; ".join(c.message for c in offenders)
    if settings.volume_override_date == day.isoformat():
        return HoldDecision(False, f"volume for {day} out of range but not held (override "
                            f"C360_VOLUME_OVERRIDE_DATE={day}): {what}", None, "overridden", listed)
    return HoldDecision(True, (
        f"Scoring and exports for {day} are held: landed volume is out of range. {what}. "
        f"Check the upstream extract for dt={day} (a file sent twice, a partial or missing extract): fix it and rerun "
        f"`c360 nightly --date {day}`. If the volume is real (a campaign, an outage), release this night only with "
        f"`c360 nightly --date {day} --accept-volume` (C360_VOLUME_OVERRIDE_DATE={day}), or export with "
        f"`c360 segments export --date {day} --force`. See docs/runbooks.md#a-night-held-for-volume."),
        None, "hold", listed)


# --------------------------------------------------------------------------------------- reading, recording


def _table_exists(con, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                            [schema, table]).fetchone()[0])


def read_counts(con, day: date, lookback: int) -> list[tuple[str, date, int, int]]:
    """(entity, partition date, files, landed rows) from raw.ingest_audit for `day` and the `lookback` nights before
    it ([] when ingestion never ran)."""
    if not _table_exists(con, "raw", "ingest_audit"):
        return []
    return con.execute(
        """WITH nights AS (SELECT DISTINCT _dt FROM raw.ingest_audit WHERE _dt < $1 ORDER BY _dt DESC LIMIT $2)
           SELECT entity, _dt, count(*)::INTEGER, coalesce(sum(landed_rows), 0)::BIGINT FROM raw.ingest_audit
           WHERE _dt = $1 OR _dt IN (SELECT _dt FROM nights) GROUP BY 1, 2""", [day, max(lookback, 0)]).fetchall()


def record_checks(con, day: date, checks: list[VolumeCheck], entities: Iterable[str]) -> None:
    """Replace the date's rows of these entities in monitoring.volume_checks (one transaction: reruns replace)."""
    con.execute(_DDL)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {VOLUME_TABLE} WHERE as_of_date = $1 AND list_contains($2, entity)",
                    [day, list(entities)])
        now = datetime.now(UTC)
        if checks:
            con.executemany(f"INSERT INTO {VOLUME_TABLE} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                            [[c.as_of_date, c.entity, c.landed, c.files, c.median, c.low, c.high, c.history, c.status,
                              c.message, now] for c in checks])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_recorded(con, day: date) -> list[VolumeCheck]:
    """The checks recorded for `day` by ingestion ([] when none)."""
    if not _table_exists(con, "monitoring", "volume_checks"):
        return []
    rows = con.execute(f"""SELECT as_of_date, entity, landed, files, median, low, high, history, status, message
                           FROM {VOLUME_TABLE} WHERE as_of_date = $1 ORDER BY entity""", [day]).fetchall()
    return [VolumeCheck(*r) for r in rows]


def run_volume_checks(con, day: date, settings: Settings, entities: Iterable[str]) -> list[VolumeCheck]:
    """Ingestion's step: check these entities for `day`, record them, log the ones out of range."""
    entities = list(entities)
    checks = [c for c in check_volumes(read_counts(con, day, settings.volume_lookback_days), day, settings)
              if c.entity in entities]
    record_checks(con, day, checks, entities)
    for c in checks:
        if c.out_of_range:
            log.warning("volume check: %s (scoring and exports of %s will be held unless overridden)", c.message, day)
        else:
            log.info("volume check: %s", c.message)
    return checks


def volume_hold(settings: Settings | None, day: date, *, con=None) -> HoldDecision:
    """Whether the night of `day` is held for volume, computed now from raw.ingest_audit with today's settings (so a
    changed bound or override applies at once). Pass an open connection, or the warehouse is opened read-only."""
    settings = settings or get_settings()
    if con is None:
        if not settings.warehouse_path.exists():
            return decide([], day, settings)
        from c360.pipeline.warehouse import connect

        con = connect(settings, read_only=True)
        try:
            return volume_hold(settings, day, con=con)
        finally:
            con.close()
    return decide(check_volumes(read_counts(con, day, settings.volume_lookback_days), day, settings), day, settings)


def skip_task_if_held(day: date, stage: str, settings: Settings | None = None) -> HoldDecision:
    """For an Airflow task (score, export): when the night is held for volume, record the stage as skipped with the
    reason (the run report shows it) and raise AirflowSkipException, so downstream tasks skip and the report runs."""
    settings = settings or get_settings()
    decision = volume_hold(settings, day)
    if decision.status == "overridden":
        log.warning("%s", decision.message)
    if not decision.hold:
        return decision
    from airflow.sdk.exceptions import AirflowSkipException

    from c360.pipeline.report.stages import record_stage

    record_stage(settings, day, stage, 0.0, "skipped", note=decision.message)
    log.error("%s", decision.message)
    raise AirflowSkipException(decision.message)
