"""Customers' right to erasure: remove one person from the warehouse, its Parquet copies, the segment exports and
the MLflow artifacts.

`c360 erase-customer CUSTOMER_ID [--dry-run] [--yes]`; docs/runbooks.md ("Erase a customer") says what goes where.
The erasure follows the identity graph: every customer id of the same person (marts.person_members as of the last
dbt build, docs/identity.md) is erased with the one named, since a guest order or a second account of the same human
is their personal data too. The erasure is logged in privacy.erasure_log by the sha256 of each id (never the id
itself), and ingestion quarantines re-landed rows of an erased customer (reason `erased_customer`, record text
withheld), so replays never restore them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from c360.config import Settings, get_settings
from c360.ingest.contract import ENTITIES, Entity

log = logging.getLogger(__name__)

REASON = "erased_customer"
# Columns that identify a customer. Any `*_customer_id` is an alias (intermediate.int_session_states has
# logged_in_customer_id), so a new table or model is covered by naming its column the usual way.
ID_COLUMN, ID_SUFFIX = "customer_id", "_customer_id"
KEY_COLUMN = "customer_key"  # sha256 of the id (customer_key()): how MLflow's holdout predictions name a customer
COOKIE_COLUMN = "anonymous_id"  # the cookie/device id of tracking data
EMAIL_COLUMN = "email"  # matched only in tables that have no customer-id column
ORDER_COLUMN = "order_id"  # a purchase event carrying the customer's order links its (guest) cookie
# Not swept like other tables: the quarantine is scrubbed (its record text), the audit holds counts only.
SPECIAL_TABLES = {("raw", "quarantine"), ("raw", "ingest_audit")}
# Separators that split a quarantined record (a JSON object or a raw CSV/JSON line) into tokens, one of which is
# the id when the record names the customer. Emails, timestamps and ids stay whole; URLs split into their parts.
RECORD_SEPARATORS = r"""[\s,;"'{}()<>|/?&=#\[\]\\]+"""
_SQL_SEPARATORS = RECORD_SEPARATORS.replace("'", "''")


def customer_key(customer_id: str) -> str:
    """What the erasure log keeps instead of the id: sha256 hex of the id as loaded (trimmed), as DuckDB's sha256()."""
    return hashlib.sha256(customer_id.strip().encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------- schema + ingestion


def ensure_privacy_tables(con) -> None:
    """The erasure log and the hashes of erased cookies; ingestion creates them before it validates."""
    con.execute("CREATE SCHEMA IF NOT EXISTS privacy")
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS privacy.erasure_log (
            erasure_id VARCHAR, customer_key VARCHAR, erased_at TIMESTAMPTZ, rows_deleted VARCHAR,
            cookies_erased INTEGER, quarantine_scrubbed BIGINT, files_rewritten VARCHAR, completed_at TIMESTAMPTZ
        )"""
    )
    # Since erasure follows the identity graph: one row per erased customer id; requested_key is the sha256 of the
    # id the request named, person_id the person they were members of (a hash, never an id). Added to older logs.
    con.execute("ALTER TABLE privacy.erasure_log ADD COLUMN IF NOT EXISTS requested_key VARCHAR")
    con.execute("ALTER TABLE privacy.erasure_log ADD COLUMN IF NOT EXISTS person_id VARCHAR")
    con.execute(
        "CREATE TABLE IF NOT EXISTS privacy.erased_cookies (anonymous_key VARCHAR, customer_key VARCHAR, "
        "erased_at TIMESTAMPTZ)"
    )


def erased_on_sql(entity: Entity, relation: str = "landed") -> str:
    """SQL: the date the row's customer was erased, or NULL. For tracking events without a customer_id, the date
    their cookie's customer was erased (anonymous events of an erased customer's cookie are theirs too)."""
    if ID_COLUMN not in entity.column_names:
        return "NULL::DATE"
    by_customer = (f"(SELECT min(erased_at)::DATE FROM privacy.erasure_log "
                   f"WHERE customer_key = sha256(trim({relation}.{ID_COLUMN})))")
    if COOKIE_COLUMN not in entity.column_names:
        return by_customer
    by_cookie = (f"CASE WHEN nullif(trim({relation}.{ID_COLUMN}), '') IS NULL THEN (SELECT min(erased_at)::DATE "
                 f"FROM privacy.erased_cookies WHERE anonymous_key = sha256(trim({relation}.{COOKIE_COLUMN}))) END")
    return f"coalesce({by_customer}, {by_cookie})"


def record_names_erased_sql(column: str) -> str:
    """SQL: true when a record's text contains, as a whole token, the id of an erased customer or cookie."""
    keys = ("(SELECT list(k) FROM (SELECT customer_key AS k FROM privacy.erasure_log "
            "UNION ALL SELECT anonymous_key FROM privacy.erased_cookies))")
    tokens = f"regexp_split_to_array({column}, '{_SQL_SEPARATORS}')"
    return f"coalesce(list_has_any(list_transform({tokens}, lambda t: sha256(t)), {keys}), false)"


# ------------------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class SweptTable:
    """A warehouse table that can hold rows about a customer, and the columns that say so."""

    schema: str
    name: str
    id_columns: tuple[str, ...]
    cookie_column: str | None
    email_column: str | None
    order_column: str | None

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def relation(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    @property
    def raw_entity(self) -> Entity | None:
        if self.schema != "raw":
            return None
        return next((e for e in ENTITIES.values() if e.table == self.name), None)

    def condition(self) -> str | None:
        """SQL over this table: the row is about the customer being erased (reads the _erase_* temp tables)."""
        parts = [f'"{c}"::VARCHAR IN (SELECT customer_id FROM _erase_ids)' for c in self.id_columns]
        if self.cookie_column:
            cookie = f'"{self.cookie_column}"::VARCHAR IN (SELECT anonymous_id FROM _erase_cookies)'
            # on a shared device, another customer's own (logged-in) rows stay: they are about them
            nobody_else = "".join(f' AND "{c}" IS NULL' for c in self.id_columns)
            parts.append(f"({cookie}{nobody_else})")
        if self.email_column and not self.id_columns:
            parts.append(f'lower(trim("{self.email_column}")) IN (SELECT email FROM _erase_emails)')
        return " OR ".join(parts) or None

    def spark_condition(self, ids: set[str], cookies: set[str], emails: set[str]):
        """The same test as condition() as a pyspark Column over the Spark table, the keys given as values (no SQL
        text is built from them); None when no key can match."""
        from functools import reduce

        from pyspark.sql import functions as F

        parts = [F.col(c).cast("string").isin(sorted(ids)) for c in self.id_columns if ids]
        if self.cookie_column and cookies:
            nobody_else = [F.col(c).isNull() for c in self.id_columns]
            parts.append(reduce(lambda a, b: a & b, nobody_else,
                                F.col(self.cookie_column).cast("string").isin(sorted(cookies))))
        if self.email_column and not self.id_columns and emails:
            parts.append(F.lower(F.trim(F.col(self.email_column))).isin(sorted(emails)))
        return reduce(lambda a, b: a | b, parts) if parts else None


def _is_id_column(name: str) -> bool:
    low = name.lower()
    return low == ID_COLUMN or low.endswith(ID_SUFFIX)


def discover_tables(con, spark_tables: bool = False) -> list[SweptTable]:
    """Every base table of the warehouse with a customer-id, cookie or email column (privacy.* and the
    quarantine/audit excepted), from information_schema, so tables added later are covered without code changes.

    spark_tables: `con` is the Spark warehouse's reader (c360.pipeline.spark_warehouse.reader), whose views stand for
    the Spark tables dbt builds; its views of the ledger file's tables (raw.*, ...) are left out (the ledger is swept
    on its own)."""
    kind, schemas = "BASE TABLE", ""
    if spark_tables:
        from c360.pipeline.spark_warehouse import MODEL_SCHEMAS

        kind, schemas = "VIEW", "AND t.table_schema IN (" + ", ".join(f"'{s}'" for s in MODEL_SCHEMAS) + ")"
    rows = con.execute(
        f"""
        SELECT c.table_schema, c.table_name, list(c.column_name ORDER BY c.ordinal_position)
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
        WHERE t.table_type = '{kind}' AND t.table_catalog = current_database() AND t.table_schema <> 'privacy'
          {schemas}
        GROUP BY 1, 2 ORDER BY 1, 2
        """
    ).fetchall()
    out = []
    for schema, name, columns in rows:
        if (schema, name) in SPECIAL_TABLES:
            continue
        by_lower = {c.lower(): c for c in columns}
        table = SweptTable(
            schema, name,
            id_columns=tuple(c for c in columns if _is_id_column(c)),
            cookie_column=by_lower.get(COOKIE_COLUMN),
            email_column=by_lower.get(EMAIL_COLUMN),
            order_column=by_lower.get(ORDER_COLUMN),
        )
        if table.condition():
            out.append(table)
    return out


def _table_exists(con, schema: str, name: str) -> bool:
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0] > 0


def _union(selects: list[str], column: str) -> str:
    return " UNION ".join(selects) if selects else f"SELECT NULL::VARCHAR AS {column} WHERE false"


@dataclass(frozen=True)
class Keys:
    """What identifies the person's rows: customer ids, order ids, cookies (anonymous_id) and emails."""

    ids: frozenset[str] = frozenset()
    orders: frozenset[str] = frozenset()
    cookies: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()


def _collected(con) -> Keys:
    """The keys _collect_keys() left in the connection's temp tables."""
    def values(table: str, column: str) -> frozenset[str]:
        return frozenset(r[0] for r in con.execute(f"SELECT {column} FROM _erase_{table}").fetchall())
    return Keys(values("ids", "customer_id"), values("orders", "order_id"), values("cookies", "anonymous_id"),
                values("emails", "email"))


def _collect_keys(con, tables: list[SweptTable], customer_ids: list[str], known: Keys | None = None) -> None:
    """Fill the temp tables the conditions read: the ids (the person's members), their orders, cookies and emails.

    Cookies: every anonymous_id seen with the customer's id (logins, dbt's identity links and attributed sessions)
    plus those whose purchase events carry one of the customer's orders (guest checkouts). `known`: keys found
    elsewhere (the Spark warehouse's tables), added to what these tables give.
    """
    known = known or Keys()
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_ids AS SELECT DISTINCT unnest($1::VARCHAR[]) AS customer_id",
                [sorted(set(customer_ids) | known.ids)])
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_known (kind VARCHAR, v VARCHAR)")
    rows = ([("order", v) for v in sorted(known.orders)] + [("cookie", v) for v in sorted(known.cookies)]
            + [("email", v) for v in sorted(known.emails)])
    if rows:
        con.executemany("INSERT INTO _erase_known VALUES (?, ?)", rows)

    def where_customer(t: SweptTable) -> str:
        return " OR ".join(f'"{c}"::VARCHAR IN (SELECT customer_id FROM _erase_ids)' for c in t.id_columns)

    orders = [f'SELECT "{t.order_column}"::VARCHAR AS order_id FROM {t.relation} WHERE {where_customer(t)}'
              for t in tables if t.order_column and t.id_columns]
    orders.append("SELECT v AS order_id FROM _erase_known WHERE kind = 'order'")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _erase_orders AS SELECT DISTINCT order_id FROM "
                f"({_union(orders, 'order_id')}) WHERE order_id IS NOT NULL")
    cookies = [f'SELECT "{t.cookie_column}"::VARCHAR AS anonymous_id FROM {t.relation} WHERE {where_customer(t)}'
               for t in tables if t.cookie_column and t.id_columns]
    cookies += [f'SELECT "{t.cookie_column}"::VARCHAR AS anonymous_id FROM {t.relation} '
                f'WHERE "{t.order_column}"::VARCHAR IN (SELECT order_id FROM _erase_orders)'
                for t in tables if t.cookie_column and t.order_column]
    cookies.append("SELECT v AS anonymous_id FROM _erase_known WHERE kind = 'cookie'")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _erase_cookies AS SELECT DISTINCT anonymous_id FROM "
                f"({_union(cookies, 'anonymous_id')}) WHERE anonymous_id IS NOT NULL")
    emails = [f'SELECT lower(trim("{t.email_column}")) AS email FROM {t.relation} WHERE {where_customer(t)}'
              for t in tables if t.email_column and t.id_columns]
    emails.append("SELECT v AS email FROM _erase_known WHERE kind = 'email'")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _erase_emails AS SELECT DISTINCT email FROM "
                f"({_union(emails, 'email')}) WHERE nullif(email, '') IS NOT NULL")
    # Whole tokens a quarantined record may name the customer by (compared in lower case).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _erase_tokens AS
           SELECT DISTINCT lower(v) AS v FROM (SELECT customer_id AS v FROM _erase_ids
               UNION ALL SELECT anonymous_id FROM _erase_cookies UNION ALL SELECT email FROM _erase_emails)"""
    )


_QUARANTINE_MATCH = (
    f"record IS NOT NULL AND list_has_any(list_transform(regexp_split_to_array(record, '{_SQL_SEPARATORS}'), "
    f"lambda t: lower(t)), (SELECT list(v) FROM _erase_tokens))"
)
# A quarantined row that ingestion would now give the reason erased_customer (the same test as erased_on_sql).
_QUARANTINE_IS_CUSTOMERS = (
    "reason <> 'malformed_record' AND ("
    "trim(try(json_extract_string(record, '$.customer_id'))) IN (SELECT customer_id FROM _erase_ids) OR ("
    "entity = 'tracking' AND nullif(trim(try(json_extract_string(record, '$.customer_id'))), '') IS NULL "
    "AND trim(try(json_extract_string(record, '$.anonymous_id'))) IN (SELECT anonymous_id FROM _erase_cookies)))"
)


# ------------------------------------------------------------------------------------------- results


@dataclass
class FileChange:
    area: str  # feature_store | scores | exports | mlflow
    uri: str
    rows: int  # rows removed (for a deleted folder: rows found in it); for mlflow also values replaced
    action: str = "rewritten"  # rewritten | deleted | unresolved (still names them: `note` says what to do)
    note: str = ""


@dataclass
class ErasureResult:
    customer_key: str  # of the id the request named
    dry_run: bool
    erased_at: datetime
    # The person the id belongs to (marts.person_members as of the last dbt build) and the sha256 of every customer id
    # erased with it, the requested one first; person_id is None when the graph is not built or does not know the id.
    person_id: str | None = None
    member_keys: list[str] = field(default_factory=list)
    previously_erased: list[date] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    tombstones: dict[str, int] = field(default_factory=dict)  # raw entity table -> rows kept as file/line only
    cookies: int = 0
    quarantine_scrubbed: int = 0
    files: list[FileChange] = field(default_factory=list)
    compacted: tuple[int, int] | None = None  # warehouse bytes before, after

    @property
    def unresolved(self) -> list[FileChange]:
        return [f for f in self.files if f.action == "unresolved"]

    def files_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for f in self.files:
            area = out.setdefault(f.area if f.action != "unresolved" else "unresolved", {"files": 0, "rows": 0})
            area["files"] += 1
            area["rows"] += f.rows
        return out


# ------------------------------------------------------------------------------------------ warehouse


def person_members(con, customer_id: str) -> tuple[str | None, list[str]]:
    """(person_id, its customer ids with `customer_id` first) from marts.person_members, the identity graph as of the
    last dbt build. A guest checkout, a second account or a vendor user id of the same human is their personal data
    too, so the erasure takes them all. The graph's guard (docs/identity.md) keeps shared devices and `info@` emails
    from linking strangers, so a guarded identifier never widens an erasure. (None, [customer_id]) when the graph
    was never built or does not know the id yet (landed after the last build): then only that id is erased."""
    if not _table_exists(con, "marts", "person_members"):
        return None, [customer_id]
    rows = con.execute(
        """SELECT m.person_id, m.customer_id FROM marts.person_members m
           WHERE m.person_id IN (SELECT person_id FROM marts.person_members WHERE customer_id = $1)
           ORDER BY m.customer_id <> $1, m.customer_id""",
        [customer_id],
    ).fetchall()
    if not rows:
        return None, [customer_id]
    return rows[0][0], [r[1] for r in rows]


# Running totals per customer id that count the sessions of every cookie linked to the id (dbt_project/models/
# feature_store/asof/fs_customer_session_totals.sql). A night recomputes only the ids of cookies that changed, and an
# erased cookie does not change, it goes: so when it was shared with someone not erased, the table is emptied and the
# next night rebuilds it from what is left (one full recomputation of that model).
SESSION_TOTALS = "feature_store_work.fs_customer_session_totals"


def _others_on_erased_cookies(con) -> int:
    """Customer ids, other than the erased, linked to one of the erased cookies (a shared device or household)."""
    if not _table_exists(con, "intermediate", "int_identity_links"):
        return 0
    return con.execute(
        """SELECT count(DISTINCT customer_id) FROM intermediate.int_identity_links
           WHERE anonymous_id IN (SELECT anonymous_id FROM _erase_cookies)
             AND customer_id NOT IN (SELECT customer_id FROM _erase_ids)"""
    ).fetchall()[0][0]


def _warehouse_phase(con, customer_ids: list[str], result: ErasureResult,
                     known: Keys | None = None) -> tuple[set[str], set[str]]:
    """Count (dry run) or remove (in the caller's transaction) the person's rows; returns (cookies, emails)."""
    tables = discover_tables(con)
    _collect_keys(con, tables, customer_ids, known)
    shared_with = _others_on_erased_cookies(con)
    cookies = {r[0] for r in con.execute("SELECT anonymous_id FROM _erase_cookies").fetchall()}
    emails = {r[0] for r in con.execute("SELECT email FROM _erase_emails").fetchall()}
    result.cookies = len(cookies)
    day = result.erased_at.date().isoformat()
    for t in tables:
        cond = t.condition()
        n = con.execute(f"SELECT count(*) FROM {t.relation} WHERE {cond}").fetchall()[0][0]
        if not n:
            continue
        result.tables[t.label] = n
        entity = t.raw_entity
        if entity is not None:
            result.tombstones[t.label] = n
        if result.dry_run:
            continue
        if entity is not None:
            # Keep landed = loaded + quarantined true per file: the rows become erased_customer tombstones (file
            # and line, no record text), exactly what reloading the file would now produce.
            con.execute(
                f"""INSERT INTO raw.quarantine
                    SELECT $1, _source_file, _source_line, _dt, _run_date, '{REASON}', $2, NULL, $3::TIMESTAMPTZ
                    FROM {t.relation} WHERE {cond}""",
                [entity.name, f"customer erased on {day}", result.erased_at],
            )
            con.execute(
                f"""UPDATE raw.ingest_audit AS a
                    SET loaded_rows = a.loaded_rows - d.n, quarantined_rows = a.quarantined_rows + d.n
                    FROM (SELECT _source_file AS f, count(*) AS n FROM {t.relation} WHERE {cond} GROUP BY 1) AS d
                    WHERE a.entity = $1 AND a.source_file = d.f""",
                [entity.name],
            )
        con.execute(f"DELETE FROM {t.relation} WHERE {cond}")
    schema, table = SESSION_TOTALS.split(".")
    if shared_with and _table_exists(con, schema, table):
        # the dry run shows it too: the rows the sweep above did not already count
        others = con.execute(f"SELECT count(*) FROM {SESSION_TOTALS}").fetchall()[0][0]
        if result.dry_run:
            others -= result.tables.get(SESSION_TOTALS, 0)
        result.tables[SESSION_TOTALS] = result.tables.get(SESSION_TOTALS, 0) + others
        log.info("%d other customer id(s) shared an erased cookie: %s emptied, the next night rebuilds it",
                 shared_with, SESSION_TOTALS)
        if not result.dry_run:
            con.execute(f"DELETE FROM {SESSION_TOTALS}")
    if _table_exists(con, "raw", "quarantine"):
        result.quarantine_scrubbed = con.execute(
            f"SELECT count(*) FROM raw.quarantine WHERE {_QUARANTINE_MATCH}"
        ).fetchall()[0][0]
        if result.quarantine_scrubbed and not result.dry_run:
            con.execute(
                f"""UPDATE raw.quarantine SET
                        reason = CASE WHEN {_QUARANTINE_IS_CUSTOMERS} THEN '{REASON}' ELSE reason END,
                        detail = CASE WHEN {_QUARANTINE_IS_CUSTOMERS} THEN $1 ELSE detail END,
                        record = NULL
                    WHERE {_QUARANTINE_MATCH}""",
                [f"customer erased on {day}"],
            )
    return cookies, emails


def _previous_erasures(con, keys: list[str]) -> list[date]:
    """Days on which one of these ids was erased before (one date per earlier erasure, however many members)."""
    if not _table_exists(con, "privacy", "erasure_log"):
        return []
    rows = con.execute(
        "SELECT min(erased_at)::DATE FROM privacy.erasure_log WHERE list_contains($1, customer_key) "
        "GROUP BY erasure_id ORDER BY 1", [keys]
    ).fetchall()
    return [r[0] for r in rows]


def _erased_cookie_keys(con, keys: list[str]) -> set[str]:
    if not _table_exists(con, "privacy", "erased_cookies"):
        return set()
    rows = con.execute("SELECT anonymous_key FROM privacy.erased_cookies WHERE list_contains($1, customer_key)",
                       [keys]).fetchall()
    return {r[0] for r in rows}


def compact_warehouse(settings: Settings) -> tuple[int, int]:
    """Rewrite the warehouse file so deleted rows are gone from disk, not just marked deleted; returns bytes
    before and after. DuckDB keeps deleted values in the file's blocks until they are reused: only a copy of the
    live data into a fresh file removes them. The copy replaces the file atomically (rename)."""
    from c360.pipeline.warehouse import connect

    path = Path(settings.warehouse_path)
    before = path.stat().st_size
    tmp = path.with_name(f".{path.name}.compact-{uuid.uuid4().hex[:8]}")
    con = connect(settings)
    try:
        con.execute("CHECKPOINT")
        catalog = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"ATTACH '{tmp.as_posix().replace(chr(39), chr(39) * 2)}' AS _compacted")
        con.execute(f'COPY FROM DATABASE "{catalog}" TO _compacted')
        con.execute("DETACH _compacted")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists() and wal.stat().st_size:
        # cannot happen while we held the lock; replacing the file under a WAL would replay it onto the copy
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{wal} is not empty after a checkpoint: not compacting. Rerun when no other process "
                           "uses the warehouse.")
    os.replace(tmp, path)
    return before, path.stat().st_size


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Matcher:
    """Which rows of a file are about the customer: the same test as SweptTable.condition, in pyarrow."""

    ids: frozenset[str]
    cookies: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()  # customer_key() of the ids, for files that carry the hash, not the id
    cookie_keys: frozenset[str] = frozenset()  # sha256 of cookies erased earlier (a rerun no longer knows them)
    emails: frozenset[str] = frozenset()

    def relevant(self, column: str) -> bool:
        low = column.lower()
        return _is_id_column(column) or low in (COOKIE_COLUMN, EMAIL_COLUMN, KEY_COLUMN)

    def mask(self, table):
        """Boolean array, true for the rows to remove (all false when the table has no relevant column)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        def strings(name: str):
            return pc.cast(table.column(name), pa.string())

        names = table.column_names
        id_cols = [n for n in names if _is_id_column(n)]
        drop = pa.array([False] * table.num_rows, pa.bool_())
        for c in id_cols:
            drop = pc.or_kleene(drop, pc.is_in(strings(c), value_set=pa.array(sorted(self.ids), pa.string())))
        key_col = next((n for n in names if n.lower() == KEY_COLUMN), None)
        if key_col and self.keys:
            drop = pc.or_kleene(drop, pc.is_in(strings(key_col), value_set=pa.array(sorted(self.keys), pa.string())))
        cookie_col = next((n for n in names if n.lower() == COOKIE_COLUMN), None)
        if cookie_col:
            values = strings(cookie_col)
            cookies = set(self.cookies)
            if self.cookie_keys:
                cookies |= {v for v in pc.unique(values).to_pylist()
                            if v is not None and customer_key(v) in self.cookie_keys}
            hit = pc.is_in(values, value_set=pa.array(sorted(cookies), pa.string()))
            for c in id_cols:
                hit = pc.and_kleene(hit, pc.is_null(table.column(c)))
            drop = pc.or_kleene(drop, hit)
        email_col = next((n for n in names if n.lower() == EMAIL_COLUMN), None)
        if email_col and not id_cols and self.emails:
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(strings(email_col)))
            drop = pc.or_kleene(drop, pc.is_in(lowered, value_set=pa.array(sorted(self.emails), pa.string())))
        return pc.fill_null(drop, False)


def _count(mask) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.cast(mask, "int64")).as_py() or 0)


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _rewrite_parquet(path: Path, matcher: Matcher, dry_run: bool) -> int:
    """Drop the customer's rows from one Parquet file (temp file + rename); returns the rows removed."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: the file alone, without columns derived from hive folder names.
    pf = pq.ParquetFile(path)
    try:
        relevant = [n for n in pf.schema_arrow.names if matcher.relevant(n)]
        if not relevant:
            return 0
        removed = _count(matcher.mask(pf.read(columns=relevant)))
        if not removed or dry_run:
            return removed
        table = pf.read()
        codec = pf.metadata.row_group(0).column(0).compression if pf.metadata.num_row_groups else "ZSTD"
    finally:
        pf.close()
    kept = table.filter(pc.invert(matcher.mask(table)))
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(kept, tmp, compression="none" if codec.upper() == "UNCOMPRESSED" else codec.lower())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Spark's local file system checks a .<name>.crc next to the file: a stale one would fail the next read.
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
    return removed


def _erase_parquet_dir(area: str, root: Path, matcher: Matcher, dry_run: bool) -> list[FileChange]:
    if not root.is_dir():
        return []
    changes = []
    # An interrupted rewrite (this module's, or LocalStorage's) leaves `.tmp-*`: a copy nothing reads. Spark's own
    # `_temporary/` of a job in progress is left alone.
    for path in sorted(root.rglob(f"{LEFTOVER_FILE_PREFIX}*")):
        if path.is_file():
            changes.append(FileChange(area, str(path), 0, action="deleted"))
            if not dry_run:
                path.unlink(missing_ok=True)
    for path in sorted(root.rglob("*.parquet")):
        if _is_hidden(path, root):  # temp and staging folders of writers in progress
            continue
        removed = _rewrite_parquet(path, matcher, dry_run)
        if removed:
            changes.append(FileChange(area, str(path), removed))
    return changes


def _filter_export_file(name: str, data: bytes, matcher: Matcher) -> tuple[bytes, int]:
    """(new bytes, rows removed) of an export file, serialised as the export writes it (same bytes as a fresh
    export of the remaining rows: c360.marketing.exports.files)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from c360.marketing.exports.files import COLUMN_TYPES, to_csv_bytes, to_parquet_bytes

    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
        mask = matcher.mask(table)
        removed = _count(mask)
        if not removed:
            return data, 0
        kept = table.filter(pc.invert(mask))
        if all(c in COLUMN_TYPES for c in kept.column_names):
            rows = list(zip(*(kept.column(c).to_pylist() for c in kept.column_names), strict=True))
            return to_parquet_bytes(kept.column_names, rows), removed
        buf = io.BytesIO()
        pq.write_table(kept, buf, compression="zstd")
        return buf.getvalue(), removed
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader, [])
    rows = list(reader)
    if not any(matcher.relevant(h) for h in header):
        return data, 0
    table = pa.table({h: pa.array([(r[i] if i < len(r) else None) or None for r in rows], pa.string())
                      for i, h in enumerate(header)})
    mask = matcher.mask(table).to_pylist()
    removed = sum(mask)
    if not removed:
        return data, 0
    return to_csv_bytes(header, [r for r, drop in zip(rows, mask, strict=True) if not drop]), removed


def _erase_exports(settings: Settings, matcher: Matcher, dry_run: bool, erased_at: datetime) -> list[FileChange]:
    """Rewrite, in place, every published export file that lists the customer, with its manifest (rows, bytes,
    sha256); delete run folders no manifest names (a previous run kept for readers, crashed staging) that list
    them. Readers that fetched the manifest before the rewrite see a checksum mismatch, and the documented
    protocol (docs/exports.md: read the manifest again and retry) applies."""
    from c360.marketing.exports.export import MANIFEST, verify_export
    from c360.storage import open_storage, sha256_bytes

    storage = open_storage(settings.export_uri, settings.s3_endpoint_url)
    changes: list[FileChange] = []
    for folder in storage.list_dirs(""):
        if not folder.startswith("dt="):
            continue
        manifest_key = f"{folder}/{MANIFEST}"
        manifest = json.loads(storage.read_bytes(manifest_key)) if storage.exists(manifest_key) else None
        referenced = {}
        for seg in (manifest or {}).get("segments", {}).values():
            for kind, f in seg["files"].items():
                referenced[f"{folder}/{f['path']}"] = (seg, kind, f)
        rewritten = 0
        for key, (seg, kind, f) in referenced.items():
            new, removed = _filter_export_file(key, storage.read_bytes(key), matcher)
            if not removed:
                continue
            changes.append(FileChange("exports", storage.uri_of(key), removed))
            rewritten += 1
            if dry_run:
                continue
            storage.write_bytes(key, new)
            f.update(rows=f["rows"] - removed, bytes=len(new), sha256=sha256_bytes(new))
            if kind == "csv":
                seg["rows"] = f["rows"]
                seg["members"] = max(0, seg.get("members", 0) - removed)
            elif kind in ("entered", "exited"):
                seg[kind] = f["rows"]
        # Unreferenced: a superseded run kept for readers, a crashed run's `_tmp-*` staging, a half-written
        # `.tmp-*` file. Staging and half-written files are deleted whatever they hold (nothing may read them, and a
        # truncated file cannot prove it does not name the customer); a run folder is deleted if a file in it lists
        # the customer or cannot be read.
        stale: dict[str, int] = {}
        for sf in storage.list(folder):
            if sf.key == manifest_key or sf.key in referenced:
                continue
            sub = sf.key[len(folder) + 1:].split("/", 1)[0]
            staging = sub.startswith(LEFTOVER_DIR_PREFIX)
            if not staging and (_is_leftover(sf.key) or not sf.key.endswith((".csv", ".parquet"))):
                continue  # a half-written file alone: the pass over the whole store below deletes it
            if sub in stale and stale[sub] > 0:
                continue
            removed = _rows_naming(storage, sf.key, matcher)
            if removed or staging:
                stale[sub] = max(stale.get(sub, 0), removed)
        for sub, removed in stale.items():
            changes.append(FileChange("exports", storage.uri_of(f"{folder}/{sub}"), max(removed, 0), action="deleted"))
            if not dry_run:
                storage.delete_prefix(f"{folder}/{sub}")
        if rewritten and not dry_run:
            manifest.setdefault("erasures", []).append(
                {"erased_at": erased_at.isoformat(timespec="seconds"), "files_rewritten": rewritten})
            storage.write_bytes(manifest_key, json.dumps(manifest, indent=2).encode("utf-8"))
            verify_export(date.fromisoformat(folder[3:]), settings, storage=storage)
    deleted = [c.uri for c in changes if c.action == "deleted"]
    for sf in storage.list(""):
        uri = storage.uri_of(sf.key)
        if _is_leftover(sf.key) and not any(uri.startswith(d + "/") for d in deleted):
            changes.append(FileChange("exports", uri, max(_rows_naming(storage, sf.key, matcher), 0),
                                      action="deleted"))
            if not dry_run:
                storage.delete_prefix(sf.key)
    return changes


# A crashed export's staging folder (c360.marketing.exports.export) and a half-written file (LocalStorage.write_bytes and
# put_file write `.tmp-*` next to the file, then rename).
LEFTOVER_DIR_PREFIX, LEFTOVER_FILE_PREFIX = "_tmp-", ".tmp-"


def _is_leftover(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(LEFTOVER_FILE_PREFIX)


def _rows_naming(storage, key: str, matcher: Matcher) -> int:
    """Rows of an export file that are about the customer; -1 when it cannot be read as CSV or Parquet (a truncated
    or foreign file cannot prove that it does not name them). A half-written file's name says nothing: try both."""
    data = storage.read_bytes(key)
    formats = [key] if key.endswith((".csv", ".parquet")) else ["leftover.parquet", "leftover.csv"]
    for as_name in formats:
        try:
            return _filter_export_file(as_name, data, matcher)[1]
        except Exception as exc:  # noqa: BLE001 - unreadable in this format
            log.debug("cannot read %s as %s: %s", storage.uri_of(key), as_name.rsplit(".", 1)[-1], exc)
    return -1


# ------------------------------------------------------------------------------------------ MLflow artifacts

def _token_pattern(values: frozenset[str]) -> re.Pattern | None:
    """A value as a whole token: `C12` matches in `"C12",` but not in `C123` or `XC12`."""
    values = sorted((v for v in values if v), key=len, reverse=True)
    if not values:
        return None
    return re.compile(r"(?<![\w.@-])(?:" + "|".join(re.escape(v) for v in values) + r")(?![\w@-])")


def _replace_values(value, targets: frozenset[str], placeholder: str) -> tuple[object, int]:
    """`value` with every string equal to a target replaced (lists, structs and maps walked); (new, count)."""
    if isinstance(value, str):
        return (placeholder, 1) if value in targets else (value, 0)
    if isinstance(value, list):
        pairs = [_replace_values(v, targets, placeholder) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, tuple):  # a map's (key, value) entries
        pairs = [_replace_values(v, targets, placeholder) for v in value]
        return tuple(v for v, _ in pairs), sum(n for _, n in pairs)
    if isinstance(value, dict):
        pairs = {k: _replace_values(v, targets, placeholder) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, sum(n for _, n in pairs.values())
    return value, 0


def _has_strings(dtype) -> bool:
    import pyarrow as pa

    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return True
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return _has_strings(dtype.value_type)
    if pa.types.is_struct(dtype):
        return any(_has_strings(dtype.field(i).type) for i in range(dtype.num_fields))
    if pa.types.is_map(dtype):
        return _has_strings(dtype.key_type) or _has_strings(dtype.item_type)
    return False


def _scrub_parquet(data: bytes, matcher: Matcher, targets: frozenset[str], placeholder: str
                   ) -> tuple[bytes | None, int]:
    """Parquet without the customer: their rows dropped (id, cookie or customer_key columns), and their id replaced
    by `placeholder` where it is a value of another column, e.g. a Spark StringIndexer's `labelsArray` (the
    recommender's user index). Replacing keeps every position, so the model still loads and its other users keep
    their index; the erased customer becomes unknown to it (scored like a new customer). (None, 0) if unchanged."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(io.BytesIO(data))
    table = pf.read()
    codec = pf.metadata.row_group(0).column(0).compression if pf.metadata.num_row_groups else "SNAPPY"
    changed = 0
    if any(matcher.relevant(n) for n in table.column_names):
        mask = matcher.mask(table)
        changed = _count(mask)
        if changed:
            table = table.filter(pc.invert(mask))
    for i, f in enumerate(table.schema):
        if not _has_strings(f.type):
            continue
        values, n = _replace_values(table.column(i).to_pylist(), targets, placeholder)
        if n:
            table = table.set_column(i, f, pa.array(values, type=f.type))
            changed += n
    if not changed:
        return None, 0
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none" if codec.upper() == "UNCOMPRESSED" else codec.lower())
    return buf.getvalue(), changed


def _scrub_json(data: bytes, matcher: Matcher, targets: frozenset[str], placeholder: str
                ) -> tuple[bytes | None, int]:
    """MLflow's input examples (`{"columns": [...], "data": [[...]]}`, also inside `dataframe_split`, or records)
    without the customer's rows; any other string equal to the id replaced by `placeholder`."""
    doc = json.loads(data)
    removed = 0

    def about_them(record: dict) -> bool:
        import pyarrow as pa

        table = pa.table({k: pa.array([None if v is None else str(v)], pa.string())
                          for k, v in record.items() if isinstance(v, str | int | type(None))})
        return bool(table.num_columns) and matcher.mask(table).to_pylist()[0]

    def walk(node):
        nonlocal removed
        if isinstance(node, dict):
            cols, rows = node.get("columns"), node.get("data")
            if isinstance(cols, list) and isinstance(rows, list) and any(matcher.relevant(str(c)) for c in cols):
                kept = [r for r in rows if not (isinstance(r, list) and about_them(dict(zip(map(str, cols), r,
                                                                                          strict=False))))]
                removed += len(rows) - len(kept)
                node = {**node, "data": kept}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            kept = [v for v in node if not (isinstance(v, dict) and any(matcher.relevant(k) for k in v)
                                             and about_them(v))]
            removed += len(node) - len(kept)
            return [walk(v) for v in kept]
        return node

    doc, replaced = _replace_values(walk(doc), targets, placeholder)
    if not removed and not replaced:
        return None, 0
    return json.dumps(doc).encode("utf-8"), removed + replaced


def _names_in_text(data: bytes, pattern: re.Pattern) -> bool:
    """The id (or its key) as a token of a text file (MLmodel, YAML, JSON, CSV, HTML...). Binary files (images,
    pickles) are not searched: a short id would match random bytes, and they hold no rows."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return pattern.search(text) is not None


def _erase_mlflow_artifacts(settings: Settings, matcher: Matcher, dry_run: bool) -> list[FileChange]:
    """Every file under the MLflow artifact root (runs and logged models) that names the customer: holdout
    predictions (by customer_id in runs before #13, by customer_key since), input examples, model data that holds
    ids (the recommender's user index). Rewritten in place where the format allows; anything else is reported as
    unresolved with what to do. Metrics, params and plots hold aggregates only and stay."""
    from c360.storage import open_storage

    root = settings.mlflow_artifact_root
    if "://" in root and not root.startswith(("s3://", "file://")):
        return [FileChange("mlflow", root, 0, "unresolved",
                           "artifact store not scanned (only local folders and s3:// are): search it for the id")]
    if "://" not in root and not Path(root).is_dir():
        return []
    storage = open_storage(root, settings.s3_endpoint_url)
    targets = frozenset(matcher.ids)
    pattern = _token_pattern(matcher.ids | matcher.keys)
    placeholder = f"erased-{secrets.token_hex(8)}"  # not derived from the id: nothing links it back
    changes: list[FileChange] = []
    for sf in storage.list(""):
        name = sf.key.rsplit("/", 1)[-1]
        if name.endswith(".crc"):
            continue  # Spark's checksums of the file beside them: removed with a rewrite below
        data = storage.read_bytes(sf.key)
        new, n = None, 0
        try:
            if name.endswith(".parquet"):
                new, n = _scrub_parquet(data, matcher, targets, placeholder)
            elif name.endswith(".json"):
                new, n = _scrub_json(data, matcher, targets, placeholder)
            elif name.endswith(".csv"):
                new, n = _filter_export_file(name, data, matcher)
                new = new if n else None
        except Exception as exc:  # noqa: BLE001 - a file that does not parse is searched as bytes below
            log.debug("cannot parse %s: %s", storage.uri_of(sf.key), exc)
        uri = storage.uri_of(sf.key)
        if pattern is not None and not name.endswith(".parquet") and _names_in_text(new or data, pattern):
            what = "rewrite it without the id, or delete the run or model version it belongs to"
            changes.append(FileChange("mlflow", uri, n, "unresolved", f"still names the customer: {what}"))
            continue
        if new is None:
            continue
        changes.append(FileChange("mlflow", uri, n))
        if dry_run:
            continue
        storage.write_bytes(sf.key, new)
        crc = f"{sf.key[: -len(name)]}.{name}.crc"
        if storage.exists(crc):
            storage.delete_prefix(crc)
    return changes


# ------------------------------------------------------------------------------------------------ spark

SPARK_LABEL = "spark:"  # result.tables labels of Spark tables (the ledger's raw.* keep their own names)
# Swept last: a failure half way through leaves the person findable (their ids and cookies) for the rerun.
SWEPT_LAST = ("marts.person_members", "intermediate.int_identity_links", "intermediate.int_identity_components")


def _erase_spark_tables(settings: Settings, keys: Keys, result: ErasureResult) -> None:
    """Count (dry run) or remove the person's rows from the Spark warehouse's tables, after the ledger's phase.

    Counted through the readers' connection with the same conditions as the DuckDB tables (SweptTable.condition);
    removed by rewriting each table that holds some (c360.pipeline.spark_warehouse.delete_rows), after the raw
    landing dates the ledger's phase changed were published again (c360.ingest.spark_publish). A cookie shared
    with someone not erased empties the session running totals as on DuckDB (SESSION_TOTALS).
    """
    from c360.pipeline.spark_warehouse import reader

    con = reader(settings)
    try:
        tables = discover_tables(con, spark_tables=True)
        _collect_keys(con, [], sorted(keys.ids), Keys(cookies=keys.cookies, emails=keys.emails))
        counts = {t: con.execute(f"SELECT count(*) FROM {t.relation} WHERE {t.condition()}").fetchall()[0][0]
                  for t in tables}
        shared_with = _others_on_erased_cookies(con)
        schema, table = SESSION_TOTALS.split(".")
        session_totals = _table_exists(con, schema, table) and \
            con.execute(f"SELECT count(*) FROM {SESSION_TOTALS}").fetchall()[0][0]
    finally:
        con.close()
    for t, n in counts.items():
        if n:
            result.tables[SPARK_LABEL + t.label] = n
    if shared_with and session_totals:
        result.tables[SPARK_LABEL + SESSION_TOTALS] = session_totals
    if result.dry_run:
        return
    from c360.ingest.spark_publish import publish_raw
    from c360.pipeline.spark_warehouse import delete_rows, session

    spark = session(settings)
    publish_raw(settings, spark)
    for t in sorted((t for t, n in counts.items() if n), key=lambda t: (t.label in SWEPT_LAST, t.label)):
        removed = delete_rows(spark, t.label, t.spark_condition(keys.ids, keys.cookies, keys.emails))
        log.info("Spark table %s: %d row(s) about the person removed", t.label, removed)
    if shared_with and session_totals:
        log.info("%d other customer id(s) shared an erased cookie: Spark's %s emptied, the next night rebuilds it",
                 shared_with, SESSION_TOTALS)
        spark.sql(f"TRUNCATE TABLE {SESSION_TOTALS}")


# ---------------------------------------------------------------------------------------------- erase


def erase_customer(customer_id: str, settings: Settings | None = None, *, dry_run: bool = False,
                   compact: bool = True, follow_person: bool = True) -> ErasureResult:
    """Remove everything about one customer and every other customer id of the same person (person_members());
    with dry_run, count it and change nothing. follow_person=False erases the named id alone (a wrong merge).

    1. Warehouse, one transaction: every base table with a customer-id column (aliases included), the events and
       sessions of their cookies, emails in tables keyed by email only; raw.* rows become erased_customer
       tombstones so the ingestion audit still reconciles; quarantined records naming them lose their text;
       privacy.erasure_log gets one row per customer id (its sha256, one erasure_id for them all),
       privacy.erased_cookies the sha256 of each cookie.
    2. Parquet under the feature store and scores folders, the published exports and the MLflow artifacts:
       rewritten without them; unpublished export runs that list them and export leftovers deleted.
    3. The warehouse file is compacted, so deleted values are gone from disk; the log row is marked completed.
    A failure after step 1 leaves the log row without completed_at: run the same command again to finish.

    With the Spark warehouse (C360_WAREHOUSE=spark) the DuckDB file is the ingestion's ledger (raw.*, quarantine,
    audit, privacy.*) and step 1 runs there; the person's ids come from the Spark tables' person_members, and the
    keys (orders, cookies, emails) from the Spark tables as well as the ledger. After it, the raw landing dates that
    changed are published to Spark again (so the Spark raw tables lose the rows too) and every other Spark table
    holding them is rewritten without them (_erase_spark_tables).
    """
    from c360.pipeline.warehouse import connect, rollback

    settings = settings or get_settings()
    customer_id = customer_id.strip()
    if not customer_id:
        raise ValueError("customer id is empty")
    if not Path(settings.warehouse_path).exists():
        raise FileNotFoundError(f"No warehouse at {settings.warehouse_path}: nothing to erase from (check "
                                "WAREHOUSE_PATH / C360_DATA_DIR).")
    key = customer_key(customer_id)
    result = ErasureResult(customer_key=key, dry_run=dry_run, erased_at=datetime.now(UTC))
    erasure_id = uuid.uuid4().hex
    on_spark = settings.warehouse == "spark"

    ids, spark_keys = [customer_id], None
    if on_spark:
        # the identity graph and the derived tables live in Spark: read them through the readers' connection
        from c360.pipeline.spark_warehouse import reader

        spark_con = reader(settings)
        try:
            if follow_person:
                result.person_id, ids = person_members(spark_con, customer_id)
            _collect_keys(spark_con, discover_tables(spark_con, spark_tables=True), ids)
            spark_keys = _collected(spark_con)
        finally:
            spark_con.close()
    # on Spark the ledger file itself (a read-only connect() would give the Spark reader)
    con = connect(settings, read_only=dry_run, path=Path(settings.warehouse_path) if on_spark else None)
    try:
        if follow_person and not on_spark:
            result.person_id, ids = person_members(con, customer_id)
        keys = [customer_key(i) for i in ids]
        result.member_keys = keys
        result.previously_erased = _previous_erasures(con, keys)
        cookie_keys = _erased_cookie_keys(con, keys)
        if dry_run:
            cookies, emails = _warehouse_phase(con, ids, result, spark_keys)
        else:
            con.execute("BEGIN TRANSACTION")
            try:
                ensure_privacy_tables(con)
                cookies, emails = _warehouse_phase(con, ids, result, spark_keys)
                # every member's key owns every cookie: a rerun named by any of them still recognises the cookies
                con.execute(
                    """INSERT INTO privacy.erased_cookies
                       SELECT DISTINCT sha256(c.anonymous_id), k.customer_key, $2::TIMESTAMPTZ
                       FROM _erase_cookies c CROSS JOIN (SELECT unnest($1::VARCHAR[]) AS customer_key) k
                       WHERE (sha256(c.anonymous_id), k.customer_key) NOT IN
                             (SELECT (anonymous_key, customer_key) FROM privacy.erased_cookies)""",
                    [keys, result.erased_at],
                )
                # One row per customer id, so ingestion quarantines any member's re-landed rows; requested_key says
                # which id the request named (the others came through the identity graph).
                con.executemany(
                    "INSERT INTO privacy.erasure_log (erasure_id, customer_key, erased_at, rows_deleted, "
                    "cookies_erased, quarantine_scrubbed, requested_key, person_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [[erasure_id, k, result.erased_at, json.dumps(result.tables, sort_keys=True), result.cookies,
                      result.quarantine_scrubbed, key, result.person_id] for k in keys],
                )
                con.execute("COMMIT")
            except BaseException as exc:
                rollback(con, exc)  # never masks exc
                raise
            con.execute("CHECKPOINT")
    finally:
        con.close()

    if on_spark:
        _erase_spark_tables(settings, Keys(frozenset(ids), cookies=frozenset(cookies), emails=frozenset(emails)),
                            result)
    matcher = Matcher(frozenset(ids), frozenset(cookies), frozenset(keys), frozenset(cookie_keys),
                      frozenset(emails))
    result.files += _erase_parquet_dir("feature_store", Path(settings.feature_store_dir), matcher, dry_run)
    result.files += _erase_parquet_dir("scores", Path(settings.scores_dir), matcher, dry_run)
    result.files += _erase_exports(settings, matcher, dry_run, result.erased_at)
    result.files += _erase_mlflow_artifacts(settings, matcher, dry_run)
    if dry_run:
        return result
    if compact:
        result.compacted = compact_warehouse(settings)
    con = connect(settings)
    try:
        # rows_deleted again: on Spark the Spark tables' rows were counted after the ledger's transaction
        con.execute(
            "UPDATE privacy.erasure_log SET rows_deleted = ?, files_rewritten = ?, completed_at = ? "
            "WHERE erasure_id = ?",
            [json.dumps(result.tables, sort_keys=True), json.dumps(result.files_summary(), sort_keys=True),
             datetime.now(UTC), erasure_id],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return result


# ------------------------------------------------------------------------------------------------ CLI


def print_summary(result: ErasureResult) -> None:
    who = f"customer sha256:{result.customer_key[:16]}…"
    print(f"\n{'Dry run - nothing changed. Would erase' if result.dry_run else 'Erased'} {who}")
    if result.person_id:
        n = len(result.member_keys)
        print(f"  person {result.person_id} (marts.person_members, last dbt build): {n} customer id(s), "
              f"{'to be erased' if result.dry_run else 'erased'} together")
        for k in result.member_keys:
            print(f"    sha256:{k[:16]}…{'  (the id you named)' if k == result.customer_key else ''}")
        if n > 1:
            print("  (see them: select * from marts.person_members where person_id = "
                  f"'{result.person_id}'; a wrong merge? --this-id-only erases the named id alone)")
    elif len(result.member_keys) == 1:
        print("  only this customer id: the identity graph does not know it (not built, or the id landed after the "
              "last dbt build), or --this-id-only")
    if result.previously_erased:
        print(f"  already erased on {', '.join(d.isoformat() for d in result.previously_erased)}: "
              "this run removes what is left (a re-run after a failure, or data restored since)")
    print(f"  {'warehouse table':<44}{'rows':>8}")
    for table, n in sorted(result.tables.items()):
        note = "  (kept as erased_customer tombstones: file and line only)" if table in result.tombstones else ""
        print(f"  {table:<44}{n:>8,}{note}")
    if not result.tables:
        print(f"  {'(no rows about the customer)':<44}{0:>8}")
    print(f"  {'cookies linked to the customer':<44}{result.cookies:>8,}  (their anonymous rows are counted above)")
    print(f"  {'raw.quarantine records naming them':<44}{result.quarantine_scrubbed:>8,}  (record text set to NULL)")
    for f in result.files:
        label = f"{f.area}: {f.uri}"
        print(f"  {label:<44}{f.rows:>8,}  ({_file_action(f, result.dry_run)})")
    if result.unresolved:
        print(f"  {len(result.unresolved)} file(s) above still name the customer and were not changed: "
              "see docs/runbooks.md, 'Erase a customer'")
    if result.dry_run:
        return
    if not result.files:
        print("  no Parquet, export or MLflow file lists the customer")
    if result.compacted:
        before, after = result.compacted
        print(f"  warehouse compacted: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (deleted rows are gone from disk)")
    print("  logged in privacy.erasure_log (by sha256 only); re-landed rows will be quarantined as erased_customer")


def _file_action(f: FileChange, dry_run: bool) -> str:
    """What happened to a file, or with --dry-run what would: a dry run never claims it changed anything."""
    if f.action == "unresolved":
        return f"NOT removed: {f.note}"
    target = "folder" if f.action == "deleted" and not f.uri.rsplit("/", 1)[-1].startswith(LEFTOVER_FILE_PREFIX) \
        else "file"
    if dry_run:
        return f"would {'delete' if f.action == 'deleted' else 'rewrite'} this {target}"
    return f"{target} {f.action}"
