"""Load landed files into the warehouse's raw schema: validate every record, load it or quarantine it with a reason.

Idempotency is per file: loading a file first deletes whatever that file loaded before (rows, quarantine rows,
audit row), all in one transaction, so reruns replace and never duplicate. The run for date D loads every file
under dt=D plus every earlier file that has not been loaded yet (late arrivals, or all history on a first run).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from c360.config import Settings, get_settings
from c360.ingest.contract import (
    ENTITIES,
    EVENT_TYPES,
    EXPECTED_REASONS,
    LINE_TYPES,
    METADATA_COLUMNS,
    ORDER_STATUSES,
    TRACKING_VENDORS,
    Entity,
)
from c360.ingest.landed_file import read_landed_file
from c360.ingest.landing import LandingPartitionMissing, partition_folder, plan_files, unsupported_reason
from c360.ingest.readers import UnreadableFile
from c360.ingest.volume import run_volume_checks
from c360.pipeline.warehouse import connect, rollback
from c360.privacy.erasure import ensure_privacy_tables, erased_on_sql, record_names_erased_sql
from c360.storage import Storage, StoredFile, open_storage

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
    # files found but never read (symbolic links): key and why
    rejected_files: list[tuple[str, str]] = field(default_factory=list)
    # (file key, reason, rows, first line, its detail) of the quarantined rows, for the quarantine-rate check
    file_reasons: list[tuple[str, str, int, int, str]] = field(default_factory=list, repr=False)
    # file key -> landed rows
    file_rows: dict[str, int] = field(default_factory=dict, repr=False)
    # loaded files that disappeared from their partition: their rows were removed
    removed_files: list[str] = field(default_factory=list)
    # tracking: loaded vendor events no adapter mapping knows (event_type 'other'), by "<vendor>:<raw name>"
    unmapped_events: Counter = field(default_factory=Counter)

    def add(self, other: EntityResult) -> None:
        self.rejected_files += other.rejected_files
        self.file_reasons += other.file_reasons
        self.file_rows.update(other.file_rows)
        self.files += other.files
        self.landed += other.landed
        self.loaded += other.loaded
        self.quarantined += other.quarantined
        self.reasons.update(other.reasons)
        self.unmapped_events.update(other.unmapped_events)


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
                    "rejected_files": [f"{key}: {why}" for key, why in v.rejected_files],
                    "removed_files": list(v.removed_files),
                    **({"unmapped_events": dict(v.unmapped_events.most_common())} if v.unmapped_events else {}),
                }
                for k, v in self.entities.items()
            },
        }


# --------------------------------------------------------------------------------------------- schema


def _ddl_columns(entity: Entity) -> str:
    cols = [*entity.columns, *METADATA_COLUMNS]
    return ", ".join(f'"{c.name}" {c.type}' for c in cols)


# Transaction lines that a replaced or deleted landed file took out of raw.transactions, with the run that removed
# them (_run_date): the incremental dbt models rebuild their orders and customer-days on the next build whatever the
# lines' dates (dbt_project/macros/reloaded_transactions.sql). Kept in dbt_project/macros/raw_tables.sql too.
REMOVED_TRANSACTIONS = "raw.transactions_removed"
REMOVED_TRANSACTIONS_DDL = (
    "order_id VARCHAR, line_id INTEGER, line_type VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMPTZ, "
    "returned_at TIMESTAMPTZ, _source_file VARCHAR, _source_line BIGINT, _dt DATE, _run_date DATE, "
    "_removed_at TIMESTAMPTZ"
)


def _record_removed(con, entity: Entity, files_table: str, run_date: date, removed_at: datetime) -> None:
    """Before a file's transaction rows are deleted (the file is reloaded or gone), keep their keys."""
    if entity.name != "transactions":
        return
    con.execute(
        f"""INSERT INTO {REMOVED_TRANSACTIONS}
            SELECT order_id, line_id, line_type, customer_id, ordered_at, returned_at, _source_file, _source_line, _dt,
                   $1::DATE, $2::TIMESTAMPTZ
            FROM raw.{entity.table} WHERE _source_file IN (SELECT source_file FROM {files_table})""",
        [run_date, removed_at],
    )


def ensure_raw_schema(con) -> None:
    """Create the raw schema and its tables (all four entities, even when they never land), and the privacy tables
    the erased_customer rule reads. (raw.scores / raw.recommendations are dbt's views over the scoring Parquet.)"""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    ensure_privacy_tables(con)
    con.execute(f"CREATE TABLE IF NOT EXISTS {REMOVED_TRANSACTIONS} ({REMOVED_TRANSACTIONS_DDL})")
    for entity in ENTITIES.values():
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{entity.table} ({_ddl_columns(entity)})")
        # a warehouse created before a column joined the contract (tracking's vendor columns) gets it, null
        for col in entity.columns:
            con.execute(f'ALTER TABLE raw.{entity.table} ADD COLUMN IF NOT EXISTS "{col.name}" {col.type}')
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
    rules: list[tuple[str, str, str]] = [
        # first: a file with the wrong columns is rejected as a whole, whatever its rows hold
        ("schema_mismatch", "_schema_problem IS NOT NULL", "_schema_problem"),
        ("malformed_record", "_malformed", "'record does not parse'"),
    ]
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
    earliest = f"TIMESTAMPTZ '{settings.earliest_date} 00:00:00+00'"
    for col in entity.timestamp_columns:
        rules.append(
            (
                "date_out_of_range",
                f'"t_{col}" < {earliest}',
                f"'{col}=' || \"{col}\" || ' is before C360_EARLIEST_DATE={settings.earliest_date}'",
            )
        )
    if entity.name == "transactions":
        # the rate dbt will use: the row's currency and the base currency, each valid on the line's activity date
        cur = f"coalesce(upper(trim(currency)), '{settings.default_currency}')"
        day = ("timezone('UTC', CASE WHEN lower(trim(line_type)) = 'return' THEN coalesce(t_returned_at, t_ordered_at) "
               "ELSE t_ordered_at END)::DATE")
        base = settings.base_currency
        # _fx_first: the first date each currency has a rate (a rate exists on day d iff first <= d: the ASOF join
        # in dbt takes the latest rate on or before d); joined in _typed, the base's is one uncorrelated lookup
        base_first = f"(SELECT first_valid FROM _fx_first WHERE currency_code = '{base}')"
        rules.append(
            (
                "no_fx_rate",
                f"{cur} <> '{base}' AND (coalesce(_fx_first_valid > {day}, TRUE) "
                f"OR coalesce({base_first} > {day}, TRUE))",
                f"'no rate from ' || {cur} || ' to {base} on ' || {day}::VARCHAR || "
                "' in dbt_project/seeds/fx_rates.csv'",
            )
        )
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
    if entity.name == "tracking":
        # the vendor marks the event as a bot or spider (Snowplow's IAB enrichment...): kept out of sessions
        rules.append(("bot_traffic", "_bot IS NOT NULL", "_bot"))
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


def _returns_sql(entity: Entity) -> str:
    """checked0 with return_without_sale applied (transactions): a valid return line needs a sale line of the same
    order (and the same product, when the return names one) already in raw or valid in this load. dbt's
    customer_360.return_rate (returned / gross revenue, tested between 0 and 1) cannot hold without it.
    Joins to distinct keys rather than correlated EXISTS: DuckDB runs those per row inside a CASE."""
    if entity.name != "transactions":
        return "SELECT * EXCLUDE (_reason00, _detail00), _reason00 AS _reason0, _detail00 AS _detail0 FROM checked0"
    product = "nullif(trim(r.product_id), '')"
    missing = (f"_reason00 IS NULL AND lower(trim(r.line_type)) = 'return' "
               f"AND (so.order_id IS NULL OR ({product} IS NOT NULL AND sp.order_id IS NULL))")
    return f"""
            WITH returned AS (
                SELECT DISTINCT trim(order_id) AS order_id FROM checked0
                WHERE _reason00 IS NULL AND lower(trim(line_type)) = 'return'
            ),
            sales AS (
                SELECT order_id, product_id FROM raw.transactions
                WHERE coalesce(line_type, 'sale') = 'sale' AND order_id IN (SELECT order_id FROM returned)
                UNION
                SELECT trim(order_id), nullif(trim(product_id), '') FROM checked0
                WHERE _reason00 IS NULL AND coalesce(lower(trim(line_type)), 'sale') = 'sale'
                  AND trim(order_id) IN (SELECT order_id FROM returned)
            ),
            sale_orders AS (SELECT DISTINCT order_id FROM sales),
            sale_products AS (SELECT DISTINCT order_id, product_id FROM sales WHERE product_id IS NOT NULL)
            SELECT r.* EXCLUDE (_reason00, _detail00),
                CASE WHEN {missing} THEN 'return_without_sale' ELSE _reason00 END AS _reason0,
                CASE WHEN {missing} THEN 'no sale line of order ' || trim(r.order_id)
                    || coalesce(' for product ' || {product}, '') || ' loaded or in this load' ELSE _detail00 END AS _detail0
            FROM checked0 r
            LEFT JOIN sale_orders so ON so.order_id = trim(r.order_id)
            LEFT JOIN sale_products sp ON sp.order_id = trim(r.order_id) AND sp.product_id = {product}"""


def validate_sql(entity: Entity, settings: Settings) -> str:
    """SQL over a registered `landed` view -> every record with its typed values, hash and reason (null = valid)."""
    rules = _rules(entity, settings)
    reason = "CASE " + " ".join(f"WHEN {cond} THEN '{r}'" for r, cond, _ in rules) + " END"
    detail = "CASE " + " ".join(f"WHEN {cond} THEN {d}" for _, cond, d in rules) + " END"
    typed = _typed_select(entity)
    fx_col, fx_join = "", ""
    if entity.name == "transactions":
        fx_col = ", _fx_first.first_valid AS _fx_first_valid"
        fx_join = (f"LEFT JOIN _fx_first ON _fx_first.currency_code = "
                   f"coalesce(upper(trim(landed.currency)), '{settings.default_currency}')")
    return f"""
        WITH typed AS (
            SELECT landed.*, {typed}, {_hash_expr(entity)} AS _row_hash, {erased_on_sql(entity)} AS _erased_on
                {fx_col} FROM landed {fx_join}
        ),
        checked0 AS (
            SELECT *, {reason} AS _reason00, {detail} AS _detail00 FROM typed
        ),
        checked AS ({_returns_sql(entity)}),
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


def _read_file(storage: Storage, entity: Entity, f: StoredFile, run_date: date) -> pa.Table:
    """One landed file as text columns + metadata, or UnreadableFile naming it, why, and what to do."""
    try:
        t = read_landed_file(storage.read_bytes(f.key), f.key, entity)
    except (UnreadableFile, UnicodeDecodeError, pa.ArrowException, EOFError) as exc:
        reason = str(exc) if isinstance(exc, UnreadableFile) else f"{f.key}: {type(exc).__name__}: {exc}"
        raise UnreadableFile(
            f"{entity.name}: cannot read {storage.uri_of(f.key)} ({reason}). Nothing of {entity.name} was loaded by "
            f"this run: the warehouse is as before. Re-land the file (or remove it from the landing zone), then rerun "
            f"`c360 ingest --date {run_date}`. See docs/landing_contract.md#formats."
        ) from exc
    n = t.num_rows
    # identity relative to the landing root: the same data under another path or bucket is the same file
    t = t.append_column("_source_file", pa.array([f.key] * n, pa.string()))
    return t.append_column("_dt", pa.array([_dt_of(f.key)] * n, pa.date32()))


def _unsupported_files(storage: Storage, entity: Entity, files: list[StoredFile], run_date: date) -> UnreadableFile:
    """Files of a type the entity does not read (x.csv.bz2, x.parquet.gz, notes.txt): skipping them would lose
    their rows without a word, so the entity loads nothing until they are re-landed, renamed or removed."""
    shown = "; ".join(f"{storage.uri_of(f.key)} ({f.key}: {unsupported_reason(entity, f.key)})" for f in files[:5])
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return UnreadableFile(
        f"{entity.name}: cannot read {len(files)} file(s) of a type ingestion does not read: {shown}{more}. Nothing "
        f"of {entity.name} was loaded by this run: the warehouse is as before. Re-land each file in a supported "
        f"format (or, if it is not data, rename it to start with '_' or remove it), then rerun "
        f"`c360 ingest --date {run_date}`. See docs/landing_contract.md#where-files-go."
    )


def _stage(landed: pa.Table, stage_dir: Path) -> str:
    """Write a batch's landed rows to a Parquet file in stage_dir; SQL reading it. Not `con.register`: DuckDB keeps
    a registered Arrow table alive until the transaction ends, so a catch-up of a year held every landed row in
    memory at once (21 GB at 1M customers); a file scan holds nothing."""
    path = stage_dir / "landed.parquet"
    pq.write_table(landed, path, compression="none")
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def _load_batch(
    con, storage: Storage, entity: Entity, files: list[StoredFile], run_date: date, settings: Settings,
    loaded_at: datetime, stage_dir: Path,
) -> tuple[EntityResult, dict[str, tuple[int, int, int]]]:
    """Load (or reload) these files inside the caller's transaction; returns the counts and per-file
    (landed, loaded, quarantined). The files' rows are staged as Parquet in stage_dir (see _stage)."""
    started = time.monotonic()
    landed = pa.concat_tables([_read_file(storage, entity, f, run_date) for f in files])
    batch_rows = landed.num_rows
    scan = _stage(landed, stage_dir)
    del landed
    keys = [f.key for f in files]
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW landed AS SELECT * FROM {scan}")
        con.execute("CREATE OR REPLACE TEMP TABLE _files AS SELECT unnest($1::VARCHAR[]) AS source_file", [keys])
        _record_removed(con, entity, "_files", run_date, loaded_at)
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
        per_file = {
            r[0]: r[1:]
            for r in con.execute(
                """SELECT _source_file, count(*), count(*) FILTER (WHERE _reason IS NULL),
                          count(*) FILTER (WHERE _reason IS NOT NULL)
                   FROM _validated GROUP BY 1"""
            ).fetchall()
        }
        seconds = time.monotonic() - started
        audit_rows = []
        for f in files:
            n_landed, n_loaded, n_quar = per_file.setdefault(f.key, (0, 0, 0))
            audit_rows.append(
                (entity.name, f.key, f.version, f.size, _dt_of(f.key), run_date, n_landed, n_loaded, n_quar, loaded_at,
                 seconds)
            )
        con.executemany("INSERT INTO raw.ingest_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audit_rows)
        reasons = Counter(
            dict(con.execute("SELECT _reason, count(*) FROM _validated WHERE _reason IS NOT NULL GROUP BY 1").fetchall())
        )
        by_file_reason = con.execute(
            """SELECT _source_file, _reason, count(*), min(_source_line), arg_min(_detail, _source_line)
               FROM _validated WHERE _reason IS NOT NULL GROUP BY 1, 2"""
        ).fetchall()
        unmapped = Counter()
        if entity.name == "tracking":
            unmapped = Counter(dict(con.execute(
                """SELECT trim(vendor) || ':' || coalesce(trim(vendor_event_name), '?'), count(*) FROM _validated
                   WHERE _reason IS NULL AND vendor IS NOT NULL AND lower(trim(event_type)) = 'other' GROUP BY 1"""
            ).fetchall()))
    finally:
        con.execute("DROP VIEW IF EXISTS landed")
    result = EntityResult(entity.name, files=len(files), landed=batch_rows, reasons=reasons,
                          unmapped_events=unmapped)
    result.quarantined = sum(reasons.values())
    result.loaded = result.landed - result.quarantined
    result.file_reasons = by_file_reason
    result.file_rows = {k: v[0] for k, v in per_file.items()}
    return result, per_file


# A key as ingestion stores it: <entity>/dt=YYYY-MM-DD/<name>. Rows loaded before file identity became relative
# hold an absolute path or URI ending with such a key; this pattern finds it.
_KEY_IN_PATH = ("(?:^|/)((?:" + "|".join(ENTITIES) + ")/(?:(?:" + "|".join(TRACKING_VENDORS) + ")/)?"
                "dt=[0-9]{4}-[0-9]{2}-[0-9]{2}/.+)$")


def relativise_source_files(con) -> int:
    """One-time migration: rewrite absolute source paths/URIs (`/data/landing/transactions/dt=D/x.csv`,
    `s3://b/p/transactions/...`) to keys relative to the landing root, in the raw tables, quarantine and audit.
    Cheap when there is nothing to do (one look at the audit). Returns the number of audit rows rewritten."""
    todo = con.execute(
        "SELECT count(*) FROM raw.ingest_audit WHERE regexp_matches(source_file, $1) "
        "AND regexp_extract(source_file, $1, 1) <> source_file",
        [_KEY_IN_PATH],
    ).fetchone()[0]
    if not todo:
        return 0
    targets = [(f"raw.{e.table}", "_source_file") for e in ENTITIES.values()]
    targets += [("raw.quarantine", "source_file"), ("raw.ingest_audit", "source_file")]
    con.execute("BEGIN TRANSACTION")
    try:
        for table, col in targets:
            con.execute(
                f"UPDATE {table} SET {col} = regexp_extract({col}, $1, 1) "
                f"WHERE regexp_matches({col}, $1) AND regexp_extract({col}, $1, 1) <> {col}",
                [_KEY_IN_PATH],
            )
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con, exc)
        raise
    log.info("raw: %d file(s) recorded under an absolute path now recorded relative to the landing root", todo)
    return todo


def loaded_versions(con, entity: Entity) -> dict[str, str]:
    rows = con.execute("SELECT source_file, file_version FROM raw.ingest_audit WHERE entity = ?", [entity.name]).fetchall()
    return dict(rows)


def fx_seed_path(settings: Settings):
    return settings.dbt_project_dir / "seeds" / "fx_rates.csv"


def load_fx_rates(con, settings: Settings) -> None:
    """The first date from which each currency has a rate, from dbt's fx_rates seed (the rates dbt converts with),
    as the temporary table _fx_first that the no_fx_rate rule reads."""
    path = fx_seed_path(settings)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the FX seed is missing; ingestion checks every foreign-currency row against "
                                "it (no_fx_rate). Restore dbt_project/seeds/fx_rates.csv from the repository.")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _fx_first AS SELECT upper(trim(currency_code)) AS currency_code, "
        "min(valid_from::DATE) AS first_valid FROM read_csv($1, header = true, all_varchar = true) GROUP BY 1",
        [str(path)],
    )


class QuarantineRateExceeded(RuntimeError):
    """Too many of a date's rows were quarantined: the extract is probably broken, so nothing is committed."""


def check_quarantine_rate(result: EntityResult, settings: Settings, storage: Storage, run_date: date) -> None:
    """Raise QuarantineRateExceeded when, for a date of this run, the share of rows quarantined for a reason that
    says the extract is wrong exceeds settings.max_quarantine_rate (dates with fewer than
    settings.quarantine_rate_min_rows landed rows are not judged: a rate over a handful of rows is noise)."""
    landed: Counter = Counter()
    for key, n in result.file_rows.items():
        landed[_dt_of(key)] += n
    bad: dict[date, Counter] = {}
    worst: dict[date, tuple] = {}
    for key, reason, n, line, detail in result.file_reasons:
        if reason in EXPECTED_REASONS:
            continue
        day = _dt_of(key)
        bad.setdefault(day, Counter())[reason] += n
        if day not in worst or n > worst[day][2]:
            worst[day] = (key, reason, n, line, detail)
    failures = []
    for day, reasons in sorted(bad.items()):
        n_bad, n_landed = sum(reasons.values()), landed[day]
        if n_landed < settings.quarantine_rate_min_rows or n_bad <= settings.max_quarantine_rate * n_landed:
            continue
        key, reason, n, line, detail = worst[day]
        failures.append(
            f"  dt={day}: {n_bad:,} of {n_landed:,} rows quarantined ({n_bad / n_landed:.1%}); top reasons: "
            + ", ".join(f"{r} {c:,}" for r, c in reasons.most_common(3))
            + f"; worst file {storage.uri_of(key)}: {n:,} rows {reason} (first at line {line}: {detail})"
        )
    if failures:
        raise QuarantineRateExceeded(
            f"{result.entity}: quarantine rate above C360_MAX_QUARANTINE_RATE={settings.max_quarantine_rate:.1%} "
            f"(duplicates, test orders, erased customers and bots not counted):\n" + "\n".join(failures) + "\n"
            f"Nothing of {result.entity} was committed. Fix the extract and re-land the file(s) (a renamed column: "
            f"see docs/landing_contract.md), then rerun `c360 ingest --date {run_date}`. If these rows are really "
            f"expected to be rejected, rerun once with C360_MAX_QUARANTINE_RATE=<higher share, e.g. 1.0>."
        )


def _vanished_files(plan, loaded: dict[str, str], run_date: date) -> list[str]:
    """Loaded files (dt <= run_date) no longer in the landing zone although their dt= partition still is: a file
    deleted or renamed to correct the data. A partition gone as a whole (a retention policy) keeps its rows."""
    out = []
    for key in loaded:
        try:
            day, folder = _dt_of(key), partition_folder(key)
        except ValueError:
            continue  # not a relative key (an unmigrated old path): never guess
        if day <= run_date and folder in plan.folders and key not in plan.present:
            out.append(key)
    return sorted(out)


def _delete_files(con, entity: Entity, keys: list[str], run_date: date, removed_at: datetime) -> int:
    """Delete what these files loaded (rows, quarantine, audit), inside the caller's transaction."""
    con.execute("CREATE OR REPLACE TEMP TABLE _gone AS SELECT unnest($1::VARCHAR[]) AS source_file", [keys])
    _record_removed(con, entity, "_gone", run_date, removed_at)
    n = con.execute(f"SELECT count(*) FROM raw.{entity.table} WHERE _source_file IN (SELECT source_file FROM _gone)"
                    ).fetchone()[0]
    con.execute(f"DELETE FROM raw.{entity.table} WHERE _source_file IN (SELECT source_file FROM _gone)")
    con.execute("DELETE FROM raw.quarantine WHERE entity = $1 AND source_file IN (SELECT source_file FROM _gone)",
                [entity.name])
    con.execute("DELETE FROM raw.ingest_audit WHERE entity = $1 AND source_file IN (SELECT source_file FROM _gone)",
                [entity.name])
    return n


def _ingest_entity(con, storage: Storage, entity: Entity, run_date: date, settings: Settings) -> EntityResult:
    """Everything this run loads for one entity, in ONE transaction: all of it is committed, or none of it.

    Files are read and validated in batches of BATCH_FILES (bounded memory, visible progress), but nothing is
    committed until every file of every date has been read and the entity's checks passed: an unreadable file
    in the middle of a date leaves the warehouse exactly as it was.
    """
    name = entity.name
    loaded = loaded_versions(con, entity)
    plan = plan_files(storage, entity, run_date, loaded)
    if plan.unsupported:
        raise _unsupported_files(storage, entity, plan.unsupported, run_date)
    vanished = _vanished_files(plan, loaded, run_date)
    if entity.required_entity and not plan.current:
        raise LandingPartitionMissing.for_entity(storage, entity, run_date)
    total = EntityResult(name, rejected_files=list(plan.rejected))
    todo = plan.catch_up + plan.current
    if plan.catch_up:
        log.info("%s: %d earlier file(s) not loaded yet (late arrivals or first run): loading them too",
                 name, len(plan.catch_up))
    if not todo and not vanished:
        log.info("%s: nothing landed for %s (optional entity, skipped)", name, run_date)
        return total
    loaded_at = datetime.now(UTC)
    if entity.name == "transactions":
        load_fx_rates(con, settings)
    # the batches' staging files, next to the warehouse (a local folder by contract), removed whatever happens;
    # made before the transaction opens, so that a failure here leaves no transaction behind
    stage = tempfile.TemporaryDirectory(prefix=".ingest-", dir=Path(settings.warehouse_path).parent)
    con.execute("BEGIN TRANSACTION")
    try:
        if vanished:
            n = _delete_files(con, entity, vanished, run_date, loaded_at)
            total.removed_files = vanished
            log.warning("%s: %d loaded file(s) no longer in the landing zone (deleted or replaced): their %s row(s) "
                        "removed from raw.%s: %s", name, len(vanished), f"{n:,}", entity.table,
                        ", ".join(storage.uri_of(k) for k in vanished[:5]) + (" ..." if len(vanished) > 5 else ""))
        for i in range(0, len(todo), BATCH_FILES):
            batch = todo[i : i + BATCH_FILES]
            res, per_file = _load_batch(con, storage, entity, batch, run_date, settings, loaded_at, Path(stage.name))
            total.add(res)
            log.info(
                "%s: %d/%d files read (dt %s..%s): %s landed, %s valid, %s quarantined%s",
                name, min(i + BATCH_FILES, len(todo)), len(todo), _dt_of(batch[0].key), _dt_of(batch[-1].key),
                f"{res.landed:,}", f"{res.loaded:,}", f"{res.quarantined:,}",
                f" ({', '.join(f'{k} {v:,}' for k, v in res.reasons.most_common())})" if res.reasons else "",
            )
        check_quarantine_rate(total, settings, storage, run_date)
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con, exc)
        raise
    finally:
        stage.cleanup()
    log.info("%s: committed %d file(s): %s landed, %s loaded, %s quarantined", name, total.files,
             f"{total.landed:,}", f"{total.loaded:,}", f"{total.quarantined:,}")
    if total.unmapped_events:
        log.info("%s: %s vendor event(s) no mapping knows, loaded as event_type 'other' with their raw name: %s "
                 "(add them to the vendor's mapping, docs/tracking_vendors.md)", name,
                 f"{sum(total.unmapped_events.values()):,}",
                 ", ".join(f"{k} {v:,}" for k, v in total.unmapped_events.most_common(10)))
    return total


def ingest(run_date: date, settings: Settings | None = None, entities: list[str] | None = None) -> IngestResult:
    """Load the landing zone's files for run_date (and unloaded earlier ones) into raw.*, all or nothing per entity.

    Raises LandingPartitionMissing when the required transactions partition for run_date is absent, and
    UnreadableFile (naming the file) when a file cannot be read: that entity's run then commits nothing.
    """
    settings = settings or get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    started = time.monotonic()
    names = entities or list(ENTITIES)
    results: dict[str, EntityResult] = {}
    con = connect(settings)
    try:
        ensure_raw_schema(con)
        relativise_source_files(con)
        for name in names:
            results[name] = _ingest_entity(con, storage, ENTITIES[name], run_date, settings)
        # recorded for the run report; scoring and exports decide on it again (c360/ingest/volume.py)
        run_volume_checks(con, run_date, settings, names)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    if settings.warehouse == "spark":
        # the ledger above is the DuckDB file either way; the Spark warehouse gets the landing dates that changed
        from c360.ingest.spark_publish import publish_raw

        publish_raw(settings)
    return IngestResult(run_date, str(settings.warehouse_path), results, time.monotonic() - started)
