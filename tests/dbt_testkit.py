"""Tiny raw warehouses for the dbt tests: raw.* tables created from the landing contract, a few hand-written rows.

Used by tests/test_dbt_*.py. Every helper takes an open DuckDB connection; nothing here touches data/.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from c360.config import get_settings
from c360.ingest.contract import ENTITIES, METADATA_COLUMNS
from c360.ingest.load import REMOVED_TRANSACTIONS, REMOVED_TRANSACTIONS_DDL

ENTITY_BY_TABLE = {e.table: e for e in ENTITIES.values()}
# seeds and models without the data tests: what the tests run when they only need the tables
BUILD_MODELS = ["build", "--resource-type", "seed", "--resource-type", "model"]


def configure_env(monkeypatch_or_environ, root: Path) -> dict[str, str]:
    """Point every setting at `root` (warehouse, feature store, dbt target/log dirs) and return the values."""
    values = {
        "C360_DATA_DIR": str(root / "data"),
        "WAREHOUSE_PATH": str(root / "warehouse" / "c360.duckdb"),
        "C360_FEATURE_STORE_DIR": str(root / "feature_store"),
        "DBT_TARGET": "ci",
        "DBT_TARGET_PATH": str(root / "dbt_target"),
        "DBT_LOG_PATH": str(root / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "C360_RUN_DATE": "",
    }
    setter = getattr(monkeypatch_or_environ, "setenv", None)
    for key, value in values.items():
        if setter:
            setter(key, value)
        else:
            monkeypatch_or_environ[key] = value
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    return values


def connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(get_settings().warehouse_path))


def create_raw_tables(con: duckdb.DuckDBPyConnection, entities=("transactions", "customers", "products", "tracking")):
    """raw.<table> for each entity with the contract's columns and DuckDB types plus the metadata columns."""
    con.execute("create schema if not exists raw")
    for name in entities:
        entity = ENTITIES[name]
        cols = ", ".join(f"{c.name} {c.type}" for c in (*entity.columns, *METADATA_COLUMNS))
        con.execute(f"create table if not exists raw.{entity.table} ({cols})")


def _ts(value):
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: list[dict],
    dt: str | date,
    *,
    loaded_at: str | datetime | None = None,
    source_file: str | None = None,
) -> None:
    """Insert rows into raw.<table> as the ingestion would: metadata filled in, missing columns null."""
    if not rows:
        return
    entity = ENTITY_BY_TABLE[table]
    dt = date.fromisoformat(dt) if isinstance(dt, str) else dt
    source_file = source_file or f"{entity.name}/dt={dt.isoformat()}/fixture-{len(rows)}-{_digest(rows)[:8]}.csv"
    loaded = _ts(loaded_at) if loaded_at else datetime.combine(dt, datetime.min.time(), UTC) + timedelta(hours=23)
    names = [c.name for c in entity.columns] + [c.name for c in METADATA_COLUMNS]
    placeholders = ", ".join("?" for _ in names)
    timestamp_cols = set(entity.timestamp_columns)
    for line, row in enumerate(rows, start=1):
        unknown = set(row) - {c.name for c in entity.columns}
        if unknown:
            raise ValueError(f"{table}: unknown columns {sorted(unknown)} in fixture row {row}")
        values = [(_ts(row.get(c)) if c in timestamp_cols else row.get(c)) for c in entity.column_names]
        values += [source_file, line, dt, dt, loaded, int(_digest(row), 16)]
        con.execute(f"insert into raw.{table} ({', '.join(names)}) values ({placeholders})", values)


def _digest(obj) -> str:
    return hashlib.md5(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def table_rows(con: duckdb.DuckDBPyConnection, relation: str, order_by: str) -> list[tuple]:
    return con.execute(f"select * from {relation} order by {order_by}").fetchall()


# --------------------------------------------------------------------------------------------------------------
# The base scenario: four customers over January 2025. Dates are the landing partitions (_dt).
#   C1  DE, consent true, withdrawn on 01-20; orders O1 (01-02, EUR) and O2 (01-10, USD); cookie A1 logs in 01-10
#   C2  FR, no consent; O3 (01-05) returned on 01-12; O5 (01-15, GBP) re-sent on 01-16 with a new amount
#   C3  SE; O4 (01-08) cancelled
#   C4  transactions only (no profile), O6 on 01-18 with amount only
#   A2  a shared device: C1, C2, C3 and C4 log in on it (> 3 customers)
#   A3  one visit split by a new utm_campaign, then a pause: three sessions
#   A1  an event of 01-14 that lands late, on 01-17
# --------------------------------------------------------------------------------------------------------------

PRODUCTS = [
    {"product_id": "P1", "name": "Runner", "category": "Shoes", "price": 50, "currency": "EUR", "updated_at": "2024-12-31T08:00:00Z"},
    {"product_id": "P2", "name": "Tote", "category": "Bags", "price": 200, "currency": "USD", "updated_at": "2024-12-31T08:00:00Z"},
    {"product_id": "P3", "name": "Novel", "category": "Books", "price": 30, "currency": "EUR", "updated_at": "2024-12-31T08:00:00Z"},
]

CUSTOMERS = [
    {"customer_id": "C1", "email": "c1@example.com", "first_name": "Ann", "last_name": "One", "signup_at": "2024-12-01T10:00:00Z",
     "country": "de", "acquisition_channel": "Organic", "marketing_consent": True, "updated_at": "2024-12-01T10:00:00Z"},
    {"customer_id": "C2", "email": "c2@example.com", "first_name": "Bob", "last_name": "Two", "signup_at": "2024-12-15T10:00:00Z",
     "country": "FR", "acquisition_channel": "paid_search", "marketing_consent": False, "updated_at": "2024-12-15T10:00:00Z"},
    {"customer_id": "C3", "email": "c3@example.com", "first_name": "Cy", "last_name": "Three", "signup_at": "2025-01-07T10:00:00Z",
     "country": "SE", "acquisition_channel": "social", "marketing_consent": True, "updated_at": "2025-01-07T10:00:00Z"},
]

C1_CONSENT_WITHDRAWN = {
    "customer_id": "C1", "email": "c1@example.com", "first_name": "Ann", "last_name": "One", "signup_at": "2024-12-01T10:00:00Z",
    "country": "DE", "acquisition_channel": "organic", "marketing_consent": False,
    "consent_updated_at": "2025-01-20T09:00:00Z", "updated_at": "2025-01-20T09:00:00Z",
}

TRANSACTIONS = {
    "2025-01-02": [
        {"order_id": "O1", "customer_id": "C1", "ordered_at": "2025-01-02T10:00:00Z", "line_id": 1, "product_id": "P1",
         "quantity": 2, "unit_price": 50, "amount": 100, "currency": "EUR", "channel": "web"},
    ],
    "2025-01-05": [
        {"order_id": "O3", "customer_id": "C2", "ordered_at": "2025-01-05T18:00:00Z", "line_id": 1, "product_id": "P3",
         "quantity": 1, "unit_price": 30, "amount": 30},
    ],
    "2025-01-08": [
        {"order_id": "O4", "customer_id": "C3", "ordered_at": "2025-01-08T12:00:00Z", "product_id": "P1",
         "quantity": 1, "unit_price": 80, "amount": 80, "status": "cancelled"},
    ],
    "2025-01-10": [
        {"order_id": "O2", "customer_id": "C1", "ordered_at": "2025-01-10T10:00:00Z", "line_id": 1, "product_id": "P2",
         "quantity": 1, "unit_price": 200, "amount": 200, "currency": "USD"},
    ],
    "2025-01-12": [
        {"order_id": "O3", "customer_id": "C2", "ordered_at": "2025-01-05T18:00:00Z", "line_id": 1, "product_id": "P3",
         "quantity": -1, "amount": -30, "line_type": "return", "returned_at": "2025-01-12T09:00:00Z"},
    ],
    "2025-01-15": [
        {"order_id": "O5", "customer_id": "C2", "ordered_at": "2025-01-15T08:00:00Z", "line_id": 1, "product_id": "P1",
         "quantity": 1, "unit_price": 60, "amount": 60, "currency": "GBP", "updated_at": "2025-01-15T08:00:00Z"},
    ],
    "2025-01-16": [
        {"order_id": "O5", "customer_id": "C2", "ordered_at": "2025-01-15T08:00:00Z", "line_id": 1, "product_id": "P1",
         "quantity": 1, "unit_price": 60, "discount": 5, "amount": 55, "currency": "GBP", "updated_at": "2025-01-16T07:00:00Z"},
    ],
    "2025-01-18": [
        {"order_id": "O6", "customer_id": "C4", "ordered_at": "2025-01-18T20:00:00Z", "amount": 40},
    ],
}


def _event(event_id, anonymous_id, occurred_at, event_type="page_view", **extra):
    return {"event_id": event_id, "anonymous_id": anonymous_id, "occurred_at": occurred_at, "event_type": event_type,
            "device_type": extra.pop("device_type", "desktop"), **extra}


TRACKING = {
    # A1: anonymous browsing on 01-09 (with a cart add), then a login and purchase on 01-10
    "2025-01-09": [
        _event("e1", "A1", "2025-01-09T10:00:00Z", page_url="/home", referrer="https://www.google.com/search"),
        _event("e2", "A1", "2025-01-09T10:05:00Z", "product_view", product_id="P2"),
        _event("e3", "A1", "2025-01-09T10:07:00Z", "add_to_cart", product_id="P2", quantity=1),
    ],
    "2025-01-10": [
        _event("e4", "A1", "2025-01-10T09:50:00Z", page_url="/p/P2", utm_source="newsletter", utm_medium="email",
               utm_campaign="jan"),
        _event("e5", "A1", "2025-01-10T09:55:00Z", "login", customer_id="C1"),
        _event("e6", "A1", "2025-01-10T10:00:00Z", "purchase", customer_id="C1", order_id="O2"),
        # A3: campaign spring, a page, campaign summer (new session), then a 50 minute pause (new session)
        _event("a31", "A3", "2025-01-10T12:00:00Z", utm_source="google", utm_medium="cpc", utm_campaign="spring",
               device_type="mobile"),
        _event("a32", "A3", "2025-01-10T12:05:00Z", "product_view", product_id="P1", device_type="mobile"),
        _event("a33", "A3", "2025-01-10T12:10:00Z", utm_source="facebook", utm_medium="paid_social",
               utm_campaign="summer", device_type="mobile"),
        _event("a34", "A3", "2025-01-10T13:00:00Z", "product_view", product_id="P3", device_type="mobile"),
        # A2: shared device, anonymous session first, then four different customers log in
        _event("s0", "A2", "2025-01-10T08:00:00Z", "product_view", product_id="P1", device_type="tablet"),
        _event("s1", "A2", "2025-01-10T09:00:00Z", "login", customer_id="C1", device_type="tablet"),
        _event("s2", "A2", "2025-01-10T11:00:00Z", "login", customer_id="C2", device_type="tablet"),
        _event("s3", "A2", "2025-01-10T14:00:00Z", "login", customer_id="C3", device_type="tablet"),
        _event("s4", "A2", "2025-01-10T16:00:00Z", "login", customer_id="C4", device_type="tablet"),
        _event("s5", "A2", "2025-01-10T18:00:00Z", "product_view", product_id="P2", device_type="tablet"),
    ],
    "2025-01-13": [
        _event("e7", "A1", "2025-01-13T20:00:00Z", "product_view", product_id="P3"),
    ],
    # lands late: happened on 01-14 (between e7 and e8 days), arrives with the 01-17 partition
    "2025-01-17": [
        _event("e8", "A1", "2025-01-14T21:00:00Z", "add_to_cart", product_id="P3", quantity=1),
    ],
}


def seed_base(con: duckdb.DuckDBPyConnection, *, up_to: str | None = None, tracking: bool = True,
              customers: bool = True, products: bool = True) -> None:
    """Insert the base scenario's partitions with dt <= up_to (all when None)."""
    create_raw_tables(con)
    limit = date.fromisoformat(up_to) if up_to else date.max
    if products and date(2025, 1, 1) <= limit:
        insert(con, "products", PRODUCTS, "2025-01-01")
    if customers:
        if date(2025, 1, 7) <= limit:
            insert(con, "customers", CUSTOMERS, "2025-01-07")
        if date(2025, 1, 20) <= limit:
            insert(con, "customers", [C1_CONSENT_WITHDRAWN], "2025-01-20")
    for dt, rows in TRANSACTIONS.items():
        if date.fromisoformat(dt) <= limit:
            insert(con, "transactions", rows, dt)
    if tracking:
        for dt, rows in TRACKING.items():
            if date.fromisoformat(dt) <= limit:
                insert(con, "tracking_events", rows, dt)


def publish_scores(day: date, scores: list[dict], recommendations: list[dict] | None = None) -> None:
    """Write a date's scores (and recommendations) as the scoring job publishes them: one Parquet file per table
    under C360_SCORES_DIR/<table>/dt=D/, replacing the date (dbt reads them through the raw.scores views). Columns
    not given are null; `recommendations` None writes no recommendations partition (a night without a recommender)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from spark_jobs.score import RECOMMENDATION_COLUMNS, SCORES_COLUMNS

    for table, rows, columns in (("scores", scores, SCORES_COLUMNS),
                                 ("recommendations", recommendations, RECOMMENDATION_COLUMNS)):
        folder = Path(get_settings().scores_dir) / table / f"dt={day.isoformat()}"
        shutil.rmtree(folder, ignore_errors=True)
        if rows is None:
            continue
        folder.mkdir(parents=True)
        data = {c: [r.get(c) for r in rows] for c in columns}
        pq.write_table(pa.table({c: v for c, v in data.items() if any(x is not None for x in v)} or data),
                       folder / "part-0.parquet")


def withdraw_scores(day: date) -> None:
    """The date's scores are gone (a re-scoring rolled back, an operator removed them)."""
    import shutil

    for table in ("scores", "recommendations"):
        shutil.rmtree(Path(get_settings().scores_dir) / table / f"dt={day.isoformat()}", ignore_errors=True)


def remove_landed_order(con, order_id: str, run_date: date) -> None:
    """What the ingestion does when the landed file holding an order is deleted or replaced (c360/ingest/load.py,
    _record_removed): it keeps the lines' keys in raw.transactions_removed with the run's date and takes them out of
    raw.transactions. The incremental order models' pre-hooks (delete_rows_missing_from, macros/strategies/spark.sql)
    look for vanished orders among those keys only."""
    con.execute(f"create table if not exists {REMOVED_TRANSACTIONS} ({REMOVED_TRANSACTIONS_DDL})")
    con.execute(f"insert into {REMOVED_TRANSACTIONS} select order_id, line_id, line_type, customer_id, ordered_at, "
                "returned_at, _source_file, _source_line, _dt, ?, now() from raw.transactions where order_id = ?",
                [run_date, order_id])
    con.execute("delete from raw.transactions where order_id = ?", [order_id])
