"""Send a night's segment changes (entered / exited) to the configured destinations, resumably (docs/destinations.md).

The rows come from the dbt view pii.segment_export_rows, the same rows as the exports' delta files: change rows of
the date and segment with `consent_ok` (dbt's consent decision) and an email. Nothing about consent is decided here.

What was planned, sent and acknowledged is recorded per (destination, segment, date, customer) in the warehouse table
`activation.sync_log` (with C360_WAREHOUSE=spark: the export rows are read from the Spark table, the log is kept in
the DuckDB ledger file, through one connection, c360.pipeline.spark_warehouse.reader):

1. plan: the date's changes not yet in the log are added as `pending`, with a batch number fixed now (so a batch
   resent after a crash has the same members and idempotency keys);
2. for each batch with rows not yet acknowledged: rows are marked `sent` (committed) before the request and
   `acknowledged` (committed) after the destination's 2xx. A crash between the two leaves `sent` rows: the rerun
   sends that batch again with the same keys, and the destination drops what it already applied. Acknowledged rows
   are never sent again;
3. a planned row whose change has left the view since (consent withdrawn, the night rebuilt) is marked `dropped`,
   never sent;
4. a withdrawal: a customer the destination last acknowledged as `entered` in a segment, whose row of the date
   (member or exit) no longer has dbt's `consent_ok`, is planned as an `exited` change with reason
   `consent_withdrawn`, matched by the key the destination received with the `entered` (kept in the log as
   `match_key`, a SHA-256: the view gives no email without consent). So the destination stops using the member.

The night must have been exported (its manifest lists the segment): a night held back by drift or volume is not
synced either.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date

from c360.config import Settings
from c360.marketing.activation.destinations import (
    Batch,
    Destination,
    DestinationConfig,
    Member,
    SyncError,
    match_key,
    open_destination,
)

log = logging.getLogger(__name__)

SYNC_LOG = "activation.sync_log"
EXPORT_ROWS = "pii.segment_export_rows"
STATUSES = ("pending", "sent", "acknowledged", "dropped")

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS activation;
CREATE TABLE IF NOT EXISTS {SYNC_LOG} (
    destination      VARCHAR NOT NULL,
    segment          VARCHAR NOT NULL,
    as_of_date       DATE NOT NULL,
    customer_id      VARCHAR NOT NULL,
    change           VARCHAR NOT NULL,
    idempotency_key  VARCHAR NOT NULL,
    batch_no         INTEGER NOT NULL,
    status           VARCHAR NOT NULL,
    sync_id          VARCHAR NOT NULL,
    planned_at       TIMESTAMPTZ NOT NULL,
    sent_at          TIMESTAMPTZ,
    acknowledged_at  TIMESTAMPTZ,
    attempts         INTEGER NOT NULL DEFAULT 0,
    response_status  INTEGER
);
-- added after the first release: a log created before gets them here
ALTER TABLE {SYNC_LOG} ADD COLUMN IF NOT EXISTS match_key VARCHAR;  -- what the destination received (SHA-256)
ALTER TABLE {SYNC_LOG} ADD COLUMN IF NOT EXISTS reason VARCHAR;     -- consent_withdrawn, or NULL: the view's change
"""
WITHDRAWN = "consent_withdrawn"



def idempotency_key_sql(alias: str) -> str:
    """The idempotency key of a change: SHA-256 of "segment|YYYY-MM-DD|customer_id", one per (segment, date,
    customer), the same on every rerun. SQL, because the plan is one INSERT ... SELECT (docs/destinations.md)."""
    return f"sha256({alias}.segment || '|' || strftime({alias}.as_of_date, '%Y-%m-%d') || '|' || {alias}.customer_id)"


class NotExported(SyncError):
    """The date (or the segment on it) has no published export: held back by drift/volume, or not run yet."""


@dataclass
class SegmentSync:
    destination: str
    segment: str
    as_of_date: str
    planned: int = 0  # changes added to the log by this run
    sent: int = 0  # members sent by this run
    batches_sent: int = 0
    acknowledged: int = 0  # members acknowledged so far (this run and earlier ones)
    dropped: int = 0  # planned, then no longer in the export rows (consent withdrawn, night rebuilt): not sent
    withdrawn: int = 0  # exits planned by this run for members who withdrew consent after their entry was sent
    without_email: int = 0  # consenting changes without an email: no match key, not sent
    seconds: float = 0.0
    error: str | None = None


@dataclass
class SyncResult:
    as_of_date: str
    segments: list[SegmentSync] = field(default_factory=list)

    @property
    def failed(self) -> list[SegmentSync]:
        return [s for s in self.segments if s.error]

    def as_dict(self) -> dict:
        return {"as_of_date": self.as_of_date, "segments": [asdict(s) for s in self.segments]}


def ensure_sync_log(con) -> None:
    con.execute(_DDL)


# ------------------------------------------------------------------------------------------------- planning


def _current_rows(con, day: date, segment: str) -> tuple[dict[str, tuple[str, str | None]], set[str]]:
    """The date's rows of the segment, read once: customer_id -> (change, email) of the consenting change rows, and
    the customers whose row lacks consent_ok (a planned withdrawal exit is still due). dbt's decision either way."""
    rows = con.execute(
        f"""SELECT customer_id, change, nullif(trim(email), ''), coalesce(consent_ok, false) FROM {EXPORT_ROWS}
            WHERE as_of_date = $1 AND segment = $2 AND (change IS NOT NULL OR NOT coalesce(consent_ok, false))""",
        [day, segment]).fetchall()
    changes = {cid: (change, email) for cid, change, email, ok in rows if ok and change is not None}
    return changes, {cid for cid, _, _, ok in rows if not ok}


def _batch_no_sql(order_by: str) -> str:
    """SQL: a planned row's batch number, after the batches already planned for ($1 destination, $2 segment, $3
    date), `$4` rows per batch in `order_by` order."""
    return (f"""(SELECT coalesce(max(batch_no) + 1, 0) FROM {SYNC_LOG}
                 WHERE destination = $1 AND segment = $2 AND as_of_date = $3)
                + (row_number() OVER (ORDER BY {order_by}) - 1) // $4""")


def plan(con, destination: str, segment: str, day: date, batch_size: int, sync_id: str) -> int:
    """Add the date's consenting changes with an email that the log does not hold yet; returns how many.

    Batches are numbered after the ones already planned, members in (change, customer_id) order."""
    before = _count(con, destination, segment, day)
    con.execute(f"""
        INSERT INTO {SYNC_LOG} (destination, segment, as_of_date, customer_id, change, idempotency_key, batch_no,
                                status, sync_id, planned_at)
        SELECT $1, r.segment, r.as_of_date, r.customer_id, r.change, {idempotency_key_sql('r')},
               {_batch_no_sql('r.change, r.customer_id')}, 'pending', $5, now()
        FROM {EXPORT_ROWS} r
        WHERE r.as_of_date = $3 AND r.segment = $2 AND r.change IS NOT NULL AND r.consent_ok
          AND nullif(trim(r.email), '') IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM {SYNC_LOG} l WHERE l.destination = $1 AND l.segment = $2
                          AND l.as_of_date = $3 AND l.customer_id = r.customer_id)""",
                [destination, segment, day, batch_size, sync_id])
    return _count(con, destination, segment, day) - before


def plan_withdrawals(con, destination: str, segment: str, day: date, batch_size: int, sync_id: str) -> int:
    """Add an `exited` change (reason consent_withdrawn) for each customer whose last acknowledged change in the
    segment, up to `day`, is `entered` and whose row of `day` in the view lacks dbt's consent_ok; returns how many.
    Matched by the stored key of that entry. Customers with a log row of `day` already are left alone."""
    before = _count(con, destination, segment, day)
    con.execute(f"""
        INSERT INTO {SYNC_LOG} (destination, segment, as_of_date, customer_id, change, idempotency_key, batch_no,
                                status, sync_id, planned_at, match_key, reason)
        WITH last_ack AS (
            SELECT customer_id, change, match_key FROM {SYNC_LOG}
            WHERE destination = $1 AND segment = $2 AND as_of_date <= $3 AND status = 'acknowledged'
            QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY as_of_date DESC, acknowledged_at DESC) = 1
        )
        SELECT $1, a.segment, a.as_of_date, a.customer_id, 'exited', {idempotency_key_sql('a')},
               {_batch_no_sql('a.customer_id')}, 'pending', $5, now(), a.match_key, '{WITHDRAWN}'
        FROM (SELECT $2::VARCHAR AS segment, $3::DATE AS as_of_date, * FROM last_ack) a
        WHERE a.change = 'entered' AND a.match_key IS NOT NULL
          AND EXISTS (SELECT 1 FROM {EXPORT_ROWS} r WHERE r.as_of_date = $3 AND r.segment = $2
                      AND r.customer_id = a.customer_id AND NOT coalesce(r.consent_ok, false))
          AND NOT EXISTS (SELECT 1 FROM {SYNC_LOG} l WHERE l.destination = $1 AND l.segment = $2
                          AND l.as_of_date = $3 AND l.customer_id = a.customer_id)""",
                [destination, segment, day, batch_size, sync_id])
    return _count(con, destination, segment, day) - before


def _count(con, destination: str, segment: str, day: date, statuses: tuple[str, ...] = STATUSES) -> int:
    return con.execute(f"""SELECT count(*) FROM {SYNC_LOG} WHERE destination = $1 AND segment = $2
                           AND as_of_date = $3 AND list_contains($4, status)""",
                       [destination, segment, day, list(statuses)]).fetchone()[0]


def _open_batches(con, destination: str, segment: str, day: date) -> list[int]:
    return [b for (b,) in con.execute(
        f"""SELECT DISTINCT batch_no FROM {SYNC_LOG} WHERE destination = $1 AND segment = $2 AND as_of_date = $3
            AND status IN ('pending', 'sent') ORDER BY 1""", [destination, segment, day]).fetchall()]


def _batch_rows(con, destination: str, segment: str, day: date, batch_no: int) -> list[tuple]:
    """(customer_id, change, idempotency_key, stored match_key, reason) of a batch's open rows."""
    return con.execute(
        f"""SELECT customer_id, change, idempotency_key, match_key, reason FROM {SYNC_LOG}
            WHERE destination = $1 AND segment = $2
            AND as_of_date = $3 AND batch_no = $4 AND status IN ('pending', 'sent') ORDER BY change, customer_id""",
        [destination, segment, day, batch_no]).fetchall()


def _record_match_keys(con, destination: str, segment: str, day: date, members) -> None:
    """Keep the key each member is sent with: a later withdrawal exit is matched by it (the view has no email then)."""
    con.execute(f"""UPDATE {SYNC_LOG} SET match_key = k.match_key
                    FROM (SELECT unnest($4::VARCHAR[]) AS customer_id, unnest($5::VARCHAR[]) AS match_key) k
                    WHERE destination = $1 AND segment = $2 AND as_of_date = $3
                      AND {SYNC_LOG}.customer_id = k.customer_id""",
                [destination, segment, day, [m.customer_id for m in members], [m.match_key for m in members]])


def _set_status(con, destination: str, segment: str, day: date, batch_no: int, status: str, extra: str = "",
                params: tuple = (), customer_ids: list[str] | None = None) -> None:
    """Move a batch's open (pending/sent) rows to `status`; only `customer_ids` of them when given."""
    only = " AND list_contains($6, customer_id)" if customer_ids is not None else ""
    con.execute(f"""UPDATE {SYNC_LOG} SET status = $5{extra}
                    WHERE destination = $1 AND segment = $2 AND as_of_date = $3 AND batch_no = $4
                      AND status IN ('pending', 'sent'){only}""",
                [destination, segment, day, batch_no, status, *([customer_ids] if customer_ids is not None else []),
                 *params])


# -------------------------------------------------------------------------------------------------- sending


def sync_segment(con, dest: Destination, segment: str, day: date, batch_size: int, sync_id: str,
                 after_batch=None) -> SegmentSync:
    """Plan and send one segment's changes of `day` to `dest`. Raises SyncError (the result so far is in
    `exc.result`) when a batch is not acknowledged; what was acknowledged stays recorded.

    `after_batch(batch_no)`: called once a batch is acknowledged and recorded (tests use it to crash mid-sync)."""
    started = time.monotonic()
    res = SegmentSync(destination=dest.name, segment=segment, as_of_date=day.isoformat())
    res.planned = plan(con, dest.name, segment, day, batch_size, sync_id)
    res.withdrawn = plan_withdrawals(con, dest.name, segment, day, batch_size, sync_id)
    res.planned += res.withdrawn
    current, withdrawn_now = _current_rows(con, day, segment)
    res.without_email = sum(1 for change, email in current.values() if not email)
    try:
        for batch_no in _open_batches(con, dest.name, segment, day):
            rows = _batch_rows(con, dest.name, segment, day, batch_no)
            gone = {cid for cid, change, _, _, reason in rows
                    if (cid not in withdrawn_now if reason == WITHDRAWN
                        else current.get(cid, (None, None))[0] != change or not current[cid][1])}
            if gone:
                # consent withdrawn (or given again, for a withdrawal exit) or the night rebuilt since planning:
                # the change is no longer ours to send
                _set_status(con, dest.name, segment, day, batch_no, "dropped", customer_ids=sorted(gone))
                res.dropped += len(gone)
            members = tuple(Member(customer_id=cid, change=change,
                                   match_key=stored if reason == WITHDRAWN else match_key(current[cid][1]),
                                   idempotency_key=key) for cid, change, key, stored, reason in rows if cid not in gone)
            if not members:
                continue
            _record_match_keys(con, dest.name, segment, day, members)
            # committed before the request: if we die now, the log says these may have reached the destination.
            # The batch's open rows are exactly `members` now (the others were just dropped).
            _set_status(con, dest.name, segment, day, batch_no, "sent", ", sent_at = now(), attempts = attempts + 1")
            batch = Batch(destination=dest.name, segment=segment, as_of_date=day, number=batch_no, members=members)
            ack = dest.send(batch)
            _set_status(con, dest.name, segment, day, batch_no, "acknowledged",
                        ", acknowledged_at = now(), response_status = $6, attempts = attempts - 1 + $7",
                        (ack.status, ack.attempts))
            res.sent += len(members)
            res.batches_sent += 1
            log.debug("%s acknowledged (%d attempt(s))", batch.label(), ack.attempts)
            if after_batch is not None:
                after_batch(batch_no)
    except SyncError as exc:
        res.error = str(exc)
        exc.result = res
        raise
    finally:
        res.acknowledged = _count(con, dest.name, segment, day, ("acknowledged",))
        res.seconds = round(time.monotonic() - started, 3)
    return res


def exported_segments(settings: Settings, day: date) -> set[str] | None:
    """The segments the date's published manifest lists; None when the date has no manifest."""
    from c360.marketing.exports.export import read_manifest
    from c360.storage import open_storage

    manifest = read_manifest(open_storage(settings.export_uri, settings.s3_endpoint_url), day)
    return None if manifest is None else set(manifest.get("segments") or {})


def sync_date(day: date, settings: Settings, destinations: list[DestinationConfig], segments: list, *,
              only_segments: list[str] | None = None, only_destinations: list[str] | None = None,
              con=None, open_dest=open_destination, after_batch=None) -> SyncResult:
    """Sync every configured destination's segments for `day`. A destination that fails (SyncError) keeps what it
    acknowledged, its remaining segments are not tried (they would meet the same outage), and the others go on;
    the result lists the failures (`failed`). Raises NotExported when the date has no published export."""
    import secrets

    from c360.pipeline.warehouse import connect, relation_exists

    chosen = [d for d in destinations if not only_destinations or d.name in only_destinations]
    if only_destinations:
        unknown = sorted(set(only_destinations) - {d.name for d in destinations})
        if unknown:
            raise SyncError(f"no destination named {', '.join(map(repr, unknown))} in {settings.destinations_file}; "
                            f"configured: {', '.join(d.name for d in destinations) or 'none'}")
    if only_segments:
        covered = {n for d in chosen for n in d.segment_names(segments)}
        stray = sorted(set(only_segments) - covered)
        if stray:
            raise SyncError(f"segment(s) {', '.join(stray)} are not synced by "
                            f"{'the chosen destinations' if only_destinations else 'any destination'} of "
                            f"{settings.destinations_file}; synced: {', '.join(sorted(covered)) or 'none'}")
    exported = exported_segments(settings, day)
    if exported is None:
        raise NotExported(f"{day} has no published export (no manifest under {settings.export_uri}/dt={day}): held "
                          "back by drift or volume, or not exported yet. Nothing was sent; sync after "
                          f"`c360 segments export --date {day}` succeeds.")
    result = SyncResult(as_of_date=day.isoformat())
    sync_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    own = con is None
    if con is None and settings.warehouse == "spark":
        # the export rows are a Spark table, the log stays in the ledger file: one connection over both
        from c360.pipeline.spark_warehouse import reader

        con = reader(settings, ledger_schemas=("activation",))
    con = con or connect(settings)
    try:
        if not relation_exists(con, EXPORT_ROWS):
            raise SyncError(f"{EXPORT_ROWS} does not exist: build it (dbt build --select +segment_export_rows, "
                            "or the nightly) before syncing.")
        ensure_sync_log(con)
        for cfg in chosen:
            names = [n for n in cfg.segment_names(segments) if not only_segments or n in only_segments]
            missing = [n for n in names if n not in exported]
            if missing:
                raise NotExported(f"destination {cfg.name!r}: segment(s) {', '.join(missing)} are not in the "
                                  f"published export of {day}; export them first (`c360 segments export --date {day}"
                                  f" --segment NAME`). Nothing was sent to {cfg.name!r}.")
            if not names:
                continue
            batch_size = cfg.batch_size or settings.sync_batch_size
            with open_dest(cfg, settings) as dest:
                for name in names:
                    try:
                        res = sync_segment(con, dest, name, day, batch_size, sync_id, after_batch=after_batch)
                    except SyncError as exc:
                        result.segments.append(exc.result)
                        log.error("%s", exc)
                        break
                    result.segments.append(res)
                    log.info("%s -> %s, %s: %d change(s) sent in %d batch(es), %d acknowledged in all, %d dropped, "
                             "%d without email, %d exit(s) for withdrawn consent planned (%.1f s)", name, cfg.name,
                             day, res.sent, res.batches_sent, res.acknowledged, res.dropped, res.without_email,
                             res.withdrawn, res.seconds)
    finally:
        if own:
            con.close()
    return result
