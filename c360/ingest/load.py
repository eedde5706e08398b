"""Load landed files into the warehouse's raw schema: validate every record, load it or quarantine it with a reason.

Idempotency is per file: loading a file first deletes whatever that file loaded before (rows, quarantine rows,
audit row), all in one transaction, so reruns replace and never duplicate. The run for date D loads every file
under dt=D plus every earlier file that has not been loaded yet (late arrivals, or all history on a first run).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePosixPath

import pyarrow as pa

from c360.config import Settings, get_settings
from c360.ingest.contract import (
    ENTITIES,
    EVENT_TYPES,
    LINE_TYPES,
    METADATA_COLUMNS,
    ORDER_STATUSES,
    Entity,
)
from c360.ingest.landing import LandingPartitionMissing, plan_files
from c360.ingest.readers import read_landed_file
from c360.privacy import ensure_privacy_tables, erased_on_sql, record_names_erased_sql
from c360.storage import Storage, StoredFile, open_storage
from c360.warehouse import connect, rollback

log = logging.getLogger(__name__)

TRUE_WORDS = ("true", "1", "yes", "t", "y")
FALSE_WORDS = ("false", "0", "no", "f", "n")
BOOLEAN_COLUMNS = {"is_test", "marketing_consent"}
ALLOWED_VALUES = {
    ("transactions", "line_type"): LINE_TYPES,
    ("transactions", "status"): ORDER_STATUSES,
    ("tracking", "event_type"): EVENT_TYPES,
}
# Files per transaction when catching up on many partitions: bounds memory, keeps progress visible.
BATCH_FILES = 64


@dataclass
class EntityResult:
    entity: str
    files: int = 0
    landed: int = 0
    loaded: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: EntityResult) -> None:
        self.files += other.files
        self.landed += other.landed
        self.loaded += other.loaded
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)


@dataclass
class IngestResult:
    run_date: date
    warehouse: str
    entities: dict[str, EntityResult]
    seconds: float

    def as_dict(self) -> dict:
        return {
            "run_date": self.run_date.isoformat(),
            "warehouse": self.warehouse,
            "seconds": round(self.seconds, 2),
            "entities": {
                k: {
                    "files": v.files,
                    "landed": v.landed,
                    "loaded": v.loaded,
                    "quarantined": v.quarantined,
                    "reasons": dict(v.reasons),
                }
                for k, v in self.entities.items()
            },
        }


# --------------------------------------------------------------------------------------------- schema


def _ddl_columns(entity: Entity) -> str:
    cols = [*entity.columns, *METADATA_COLUMNS]
    return ", ".join(f'"{c.name}" {c.type}' for c in cols)


def ensure_raw_schema(con) -> None:
    """Create the raw schema and its tables (all four entities, even when they never land, and the score tables),
    and the privacy tables the erased_customer rule reads."""
    from c360.scores_load import ensure_tables

    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    ensure_tables(con)
    ensure_privacy_tables(con)
    for entity in ENTITIES.values():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{entity.table} ({_ddl_columns(entity)})")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS raw.quarantine (
            entity VARCHAR, source_file VARCHAR, source_line BIGINT, _dt DATE, _run_date DATE,
            reason VARCHAR, detail VARCHAR, record VARCHAR, quarantined_at TIMESTAMPTZ
        )"""
    )
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS raw.ingest_audit (
            entity VARCHAR, source_file VARCHAR, file_version VARCHAR, file_size BIGINT, _dt DATE,
            _run_date DATE, landed_rows BIGINT, loaded_rows BIGINT, quarantined_rows BIGINT,
            loaded_at TIMESTAMPTZ, seconds DOUBLE
        )"""
    )


# ----------------------------------------------------------------------------------------- validation


def _blank(col: str) -> str:
    return f"(nullif(trim(\"{col}\"), '') IS NULL)"


def _bool_expr(col: str) -> str:
    t = ", ".join(f"'{w}'" for w in TRUE_WORDS)
    f = ", ".join(f"'{w}'" for w in FALSE_WORDS)
    return (
        f"CASE WHEN lower(trim(\"{col}\")) IN ({t}) THEN TRUE "
        f"WHEN lower(trim(\"{col}\")) IN ({f}) THEN FALSE END"
    )


def _rules(entity: Entity, settings: Settings) -> list[tuple[str, str, str]]:
    """(reason, SQL condition over the typed view, SQL detail) in the order they are checked."""
    rules: list[tuple[str, str, str]] = [("malformed_record", "_malformed", "'record does not parse'")]
    if "customer_id" in entity.column_names:
        # before every other rule: whatever else is wrong with it, an erased customer's row keeps no record text
        rules.append(("erased_customer", "_erased_on IS NOT NULL", "'customer erased on ' || _erased_on::VARCHAR"))
    for col in entity.required_columns:
        if entity.name == "transactions" and col == "customer_id":
            continue
        rules.append(("missing_required", _blank(col), f"'{col} is required'"))
    if entity.name == "transactions":
        rules.append(("missing_customer_id", _blank("customer_id"), "'customer_id is required'"))
    for col in entity.timestamp_columns:
        rules.append(
            ("invalid_timestamp", f'"{col}" IS NOT NULL AND "t_{col}" IS NULL', f"'{col}=' || \"{col}\"")
        )
    for col in entity.numeric_columns:
        rules.append(("invalid_number", f'"{col}" IS NOT NULL AND "t_{col}" IS NULL', f"'{col}=' || \"{col}\""))
    if entity.name == "transactions":
        rules.append(
            (
                "missing_amount",
                "t_amount IS NULL AND (t_quantity IS NULL OR t_unit_price IS NULL)",
                "'needs amount, or quantity and unit_price'",
            )
        )
    for (ent, col), allowed in ALLOWED_VALUES.items():
        if ent == entity.name:
            values = ", ".join(f"'{v}'" for v in allowed)
            rules.append(
                (
                    "invalid_value",
                    f'"{col}" IS NOT NULL AND lower(trim("{col}")) NOT IN ({values})',
                    f"'{col}=' || \"{col}\" || ' (allowed: {', '.join(allowed)})'",
                )
            )
    for col in sorted(BOOLEAN_COLUMNS & set(entity.column_names)):
        rules.append(
            ("invalid_value", f'"{col}" IS NOT NULL AND "t_{col}" IS NULL', f"'{col}=' || \"{col}\" || ' is not a boolean'")
        )
    if "currency" in entity.column_names:
        allowed = ", ".join(f"'{c}'" for c in settings.currencies)
        rules.append(
            (
                "unknown_currency",
                f"currency IS NOT NULL AND upper(trim(currency)) NOT IN ({allowed})",
                "'currency=' || currency || ' (allowed: C360_CURRENCIES)'",
            )
        )
    if entity.name == "transactions":
        rules.append(
            (
                "negative_quantity",
                "(t_quantity < 0 OR t_amount < 0) AND coalesce(lower(trim(line_type)), 'sale') <> 'return'",
                "'quantity=' || coalesce(quantity, '') || ', amount=' || coalesce(amount, '') || ' on a sale line'",
            )
        )
    limit = f"(_dt + INTERVAL 1 DAY + INTERVAL {float(settings.future_tolerance_hours) * 3600:.0f} SECOND)"
    for col in entity.timestamp_columns:
        rules.append(
            (
                "future_timestamp",
                f'"t_{col}" > {limit}::TIMESTAMPTZ',
                f"'{col}=' || \"{col}\" || ' is after the end of dt=' || _dt::VARCHAR",
            )
        )
    if entity.name == "transactions":
        rules.append(("test_order", "t_is_test IS TRUE", "'is_test=' || is_test"))
    return rules


def _typed_select(entity: Entity) -> str:
    exprs = []
    for col in entity.columns:
        if col.name in BOOLEAN_COLUMNS:
            exprs.append(f'{_bool_expr(col.name)} AS "t_{col.name}"')
        elif col.type != "VARCHAR":
            exprs.append(f'TRY_CAST(trim("{col.name}") AS {col.type}) AS "t_{col.name}"')
    return ", ".join(exprs)


def _hash_expr(entity: Entity) -> str:
    cols = entity.duplicate_key or tuple(entity.column_names)
    parts = ", ".join(f"coalesce(\"{c}\", '\\0')" for c in cols)
    return f"md5_number(concat_ws(chr(31), {parts}))"


def _output_expr(entity: Entity, col) -> str:
    """The value written to raw for a valid row: typed, normalised, defaults filled."""
    name = col.name
    if entity.name == "transactions" and name == "amount":
        return "coalesce(t_amount, t_quantity * t_unit_price - coalesce(t_discount, 0))::DECIMAL(18,4)"
    if name in ("currency",):
        return "upper(trim(currency))"
    if (entity.name, name) in ALLOWED_VALUES:
        return f'lower(trim("{name}"))'
    if col.type == "VARCHAR":
        return f'nullif(trim("{name}"), \'\')'
    return f'"t_{name}"'


def validate_sql(entity: Entity, settings: Settings) -> str:
    """SQL over a registered `landed` view -> every record with its typed values, hash and reason (null = valid)."""
    rules = _rules(entity, settings)
    reason = "CASE " + " ".join(f"WHEN {cond} THEN '{r}'" for r, cond, _ in rules) + " END"
    detail = "CASE " + " ".join(f"WHEN {cond} THEN {d}" for _, cond, d in rules) + " END"
    typed = _typed_select(entity)
    return f"""
        WITH typed AS (
            SELECT *, {typed}, {_hash_expr(entity)} AS _row_hash, {erased_on_sql(entity)} AS _erased_on FROM landed
        ),
        checked AS (
            SELECT *, {reason} AS _reason0, {detail} AS _detail0 FROM typed
        ),
        dups AS (
            SELECT *,
                _reason0 IS NULL AND (
                    row_number() OVER (PARTITION BY _row_hash, _reason0 IS NULL ORDER BY _dt, _source_file, _source_line) > 1
                    OR _row_hash IN (SELECT _row_hash FROM raw.{entity.table})
                ) AS _dup
            FROM checked
        )
        SELECT *,
            CASE WHEN _dup THEN 'duplicate_row' ELSE _reason0 END AS _reason,
            CASE WHEN _dup THEN 'same record already loaded' ELSE _detail0 END AS _detail
        FROM dups
    """


# ------------------------------------------------------------------------------------------- loading


def _dt_of(key: str) -> date:
    for part in PurePosixPath(key).parts:
        if part.startswith("dt="):
            return date.fromisoformat(part[3:])
    raise ValueError(f"{key}: not inside a dt=YYYY-MM-DD folder")


def _read_batch(storage: Storage, entity: Entity, files: list[StoredFile]) -> pa.Table:
    tables = []
    for f in files:
        t = read_landed_file(storage.read_bytes(f.key), f.key, entity)
        n = t.num_rows
        t = t.append_column("_source_file", pa.array([storage.uri_of(f.key)] * n, pa.string()))
        t = t.append_column("_dt", pa.array([_dt_of(f.key)] * n, pa.date32()))
        tables.append(t)
    return pa.concat_tables(tables)


def load_files(con, storage: Storage, entity: Entity, files: list[StoredFile], run_date: date, settings: Settings) -> EntityResult:
    """Load (or reload) these files in one transaction; returns the counts."""
    started = time.monotonic()
    landed = _read_batch(storage, entity, files)
    uris = [storage.uri_of(f.key) for f in files]
    loaded_at = datetime.now(UTC)
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("landed", landed)
        con.execute("CREATE OR REPLACE TEMP TABLE _files AS SELECT unnest($1::VARCHAR[]) AS source_file", [uris])
        con.execute(f"DELETE FROM raw.{entity.table} WHERE _source_file IN (SELECT source_file FROM _files)")
        con.execute("DELETE FROM raw.quarantine WHERE source_file IN (SELECT source_file FROM _files)")
        con.execute("DELETE FROM raw.ingest_audit WHERE source_file IN (SELECT source_file FROM _files)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE _validated AS {validate_sql(entity, settings)}")
        out_cols = ", ".join(f'"{c.name}"' for c in (*entity.columns, *METADATA_COLUMNS))
        out_exprs = ", ".join(_output_expr(entity, c) for c in entity.columns)
        con.execute(
            f"""INSERT INTO raw.{entity.table} ({out_cols})
                SELECT {out_exprs}, _source_file, _source_line, _dt, $1::DATE, $2::TIMESTAMPTZ, _row_hash
                FROM _validated WHERE _reason IS NULL ORDER BY _dt, _source_file, _source_line""",
            [run_date, loaded_at],
        )
        # An erased customer's record text is never kept, not even in a malformed line that names them.
        record = f"CASE WHEN _reason = 'erased_customer' OR {record_names_erased_sql('_record')} THEN NULL ELSE _record END"
        con.execute(
            f"""INSERT INTO raw.quarantine
               SELECT $1, _source_file, _source_line, _dt, $2::DATE, _reason, _detail, {record}, $3::TIMESTAMPTZ
               FROM _validated WHERE _reason IS NOT NULL ORDER BY _dt, _source_file, _source_line""",
            [entity.name, run_date, loaded_at],
        )
        per_file = dict(
            (r[0], r[1:])
            for r in con.execute(
                """SELECT _source_file, count(*), count(*) FILTER (WHERE _reason IS NULL),
                          count(*) FILTER (WHERE _reason IS NOT NULL)
                   FROM _validated GROUP BY 1"""
            ).fetchall()
        )
        seconds = time.monotonic() - started
        audit_rows = []
        for f, uri in zip(files, uris, strict=True):
            n_landed, n_loaded, n_quar = per_file.get(uri, (0, 0, 0))
            audit_rows.append(
                (entity.name, uri, f.version, f.size, _dt_of(f.key), run_date, n_landed, n_loaded, n_quar, loaded_at, seconds)
            )
        con.executemany("INSERT INTO raw.ingest_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audit_rows)
        reasons = Counter(
            dict(con.execute("SELECT _reason, count(*) FROM _validated WHERE _reason IS NOT NULL GROUP BY 1").fetchall())
        )
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con, exc)  # never masks exc
        raise
    finally:
        con.unregister("landed")
    result = EntityResult(entity.name, files=len(files), landed=landed.num_rows, reasons=reasons)
    result.quarantined = sum(reasons.values())
    result.loaded = result.landed - result.quarantined
    return result


def loaded_versions(con, entity: Entity) -> dict[str, str]:
    rows = con.execute("SELECT source_file, file_version FROM raw.ingest_audit WHERE entity = ?", [entity.name]).fetchall()
    return dict(rows)


def ingest(run_date: date, settings: Settings | None = None, entities: list[str] | None = None) -> IngestResult:
    """Load the landing zone's files for run_date (and unloaded earlier ones) into raw.*.

    Raises LandingPartitionMissing when the required transactions partition for run_date is absent.
    """
    settings = settings or get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    started = time.monotonic()
    names = entities or list(ENTITIES)
    results: dict[str, EntityResult] = {}
    con = connect(settings)
    try:
        ensure_raw_schema(con)
        for name in names:
            entity = ENTITIES[name]
            plan = plan_files(storage, entity, run_date, loaded_versions(con, entity))
            if entity.required_entity and not plan.current:
                raise LandingPartitionMissing.for_entity(storage, entity, run_date)
            total = EntityResult(name)
            todo = plan.catch_up + plan.current
            if plan.catch_up:
                log.info("%s: %d earlier file(s) not loaded yet (late arrivals or first run): loading them too",
                         name, len(plan.catch_up))
            for i in range(0, len(todo), BATCH_FILES):
                batch = todo[i : i + BATCH_FILES]
                res = load_files(con, storage, entity, batch, run_date, settings)
                total.add(res)
                log.info(
                    "%s: %d/%d files (dt %s..%s): %s landed, %s loaded, %s quarantined%s",
                    name, min(i + BATCH_FILES, len(todo)), len(todo), _dt_of(batch[0].key), _dt_of(batch[-1].key),
                    f"{res.landed:,}", f"{res.loaded:,}", f"{res.quarantined:,}",
                    f" ({', '.join(f'{k} {v:,}' for k, v in res.reasons.most_common())})" if res.reasons else "",
                )
            if not todo:
                log.info("%s: nothing landed for %s (optional entity, skipped)", name, run_date)
            results[name] = total
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return IngestResult(run_date, str(settings.warehouse_path), results, time.monotonic() - started)
