"""The feature store's point-in-time rule, end to end: the snapshot at T never changes when data lands after T.

Build the snapshot at T, land more data (later days, and late rows about days before T), run the later nights,
rebuild T: identical. And a fresh warehouse loaded with everything at once gives the same snapshot at T.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

T = date(2025, 1, 12)
LATEST = date(2025, 1, 20)

# Rows that land after T but describe the time before T: a late order, a re-sent line of an earlier order,
# a late tracking event between two of A1's sessions, and a consent change dated before T.
LATE_TRANSACTIONS = {
    "2025-01-14": [
        {"order_id": "O7", "customer_id": "C3", "ordered_at": "2025-01-11T09:00:00Z", "product_id": "P3",
         "quantity": 1, "amount": 25},
        {"order_id": "O2", "customer_id": "C1", "ordered_at": "2025-01-10T10:00:00Z", "line_id": 1, "product_id": "P2",
         "quantity": 1, "unit_price": 200, "amount": 150, "currency": "USD", "updated_at": "2025-01-14T08:00:00Z"},
    ],
}
LATE_TRACKING = {
    "2025-01-15": [
        kit._event("late1", "A1", "2025-01-09T10:30:00Z", "product_view", product_id="P1"),
        kit._event("late2", "A9", "2025-01-11T10:00:00Z", "login", customer_id="C3"),
    ],
}
LATE_CUSTOMERS = {
    "2025-01-13": [dict(kit.CUSTOMERS[2], marketing_consent=False, updated_at="2025-01-11T10:00:00Z")],
}


# tables that must not depend on the path taken (nightly increments vs one full build)
PATH_INDEPENDENT = {
    "intermediate.int_customer_daily_orders": "customer_id, activity_date, known_date",
    "intermediate.int_session_states": "session_id, known_date",
    "intermediate.int_identity_links": "anonymous_id, customer_id, link_date, known_date",
    "intermediate.int_order_lines": "line_key",
    "marts.fct_orders": "order_id",
    "marts.fct_sessions": "session_id",
    "feature_store.interactions": "interaction_id",
}


def tables(names: dict[str, str]) -> dict[str, list[tuple]]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return {t: kit.table_rows(con, t, order) for t, order in names.items()}


def snapshot_at(day: date) -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute(
            "select * from feature_store.customer_features where as_of_date = ? order by customer_id", [day]
        ).fetchall()


def land_late_data(con) -> None:
    for dt, rows in LATE_TRANSACTIONS.items():
        kit.insert(con, "transactions", rows, dt)
    for dt, rows in LATE_TRACKING.items():
        kit.insert(con, "tracking_events", rows, dt)
    for dt, rows in LATE_CUSTOMERS.items():
        kit.insert(con, "customers", rows, dt)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbt_pit")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        yield {"mp": mp, "root": root}


@pytest.fixture(scope="module")
def incremental(env):
    """The nightly path: build T, land everything else (later days and late rows about days before T), run the
    later nights (one catch-up run), rebuild T. A fixture, not a test's side effect, so each test below runs alone
    or in any order, and a failed build fails them instead of skipping one."""
    settings = get_settings()
    with kit.connect() as con:
        kit.seed_base(con, up_to=T.isoformat())
    transform.run_dbt(kit.BUILD_MODELS, T, settings)
    original = snapshot_at(T)

    with kit.connect() as con:
        for dt, rows in kit.TRANSACTIONS.items():
            if date.fromisoformat(dt) > T:
                kit.insert(con, "transactions", rows, dt)
        for dt, rows in kit.TRACKING.items():
            if date.fromisoformat(dt) > T:
                kit.insert(con, "tracking_events", rows, dt)
        kit.insert(con, "customers", [kit.C1_CONSENT_WITHDRAWN], "2025-01-20")
        land_late_data(con)

    transform.run_dbt(kit.BUILD_MODELS, LATEST, settings)
    later = snapshot_at(LATEST)
    transform.run_dbt(kit.BUILD_MODELS, T, settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        c3 = con.execute(
            "select orders_count, marketing_consent from feature_store.customer_features "
            "where as_of_date = ? and customer_id = 'C3'", [LATEST]
        ).fetchone()
    return {"original": original, "latest": later, "rebuilt": snapshot_at(T), "c3_latest": c3,
            "tables": tables(PATH_INDEPENDENT)}


def test_snapshot_at_t_is_unchanged_by_data_landing_later(incremental):
    assert len(incremental["original"]) == 3  # C1, C2, C3 are known at T (C4 only buys on 01-18)
    assert len(incremental["latest"]) == 4
    assert incremental["rebuilt"] == incremental["original"]
    # the late rows do count from the date they landed: C3's late order, and its consent withdrawn
    assert incremental["c3_latest"] == (1, False)


def test_fresh_warehouse_with_all_data_gives_the_same_tables(incremental, tmp_path, monkeypatch):
    """Incremental nights (with a catch-up and a backfill) and one full build agree: same intermediate tables and
    marts, same snapshots at the latest date and at T."""
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        kit.seed_base(con)
        land_late_data(con)
    transform.run_dbt(kit.BUILD_MODELS, LATEST, get_settings())
    fresh = tables(PATH_INDEPENDENT)
    for table, rows in incremental["tables"].items():
        assert fresh[table] == rows, f"{table}: incremental and full builds differ"
    assert snapshot_at(LATEST) == incremental["latest"]
    transform.run_dbt(kit.BUILD_MODELS, T, get_settings())
    assert snapshot_at(T) == incremental["original"]
