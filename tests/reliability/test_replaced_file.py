"""A replaced landed file removes its rows from every downstream model on the next night, however old the file's
date (issue #13 item 10 / Deliver 9): land a bad row, the night fails, replace the file without it, the next night
passes and the row is in no table. Ingestion and dbt only, on a handful of rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.load import ingest
from c360.pipeline import transform
from c360.storage import LocalStorage

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

HEADER = "order_id,customer_id,ordered_at,line_id,product_id,amount,currency\n"
NIGHT_A, NIGHT_B, NIGHT_C = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 10)  # C: B is older than the lookback
BAD_FILE = f"transactions/dt={NIGHT_B}/more.csv"
# two rows dated 1965, when dbt's FX seed has no USD rate: order o1 gains a second line, obad is a new order
BAD_LINES = ["o1,c1,1965-03-01T10:00:00Z,2,p2,20,USD", "obad,c2,1965-03-01T11:00:00Z,1,p1,5,USD"]


def land(settings, key: str, *lines: str) -> None:
    LocalStorage(settings.landing_uri).write_bytes(key, (HEADER + "\n".join(lines) + "\n").encode())


def rows(settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def night(settings, day: date):
    ingest(day, settings)
    return transform.build(day, settings)


def test_a_replaced_file_older_than_the_lookback_leaves_no_row_in_any_model(c360_env, monkeypatch, tmp_path):
    for key, value in {"DBT_TARGET": "ci", "DBT_TARGET_PATH": str(tmp_path / "dbt_target"),
                       "DBT_LOG_PATH": str(tmp_path / "dbt_logs"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                       "C360_EARLIEST_DATE": "1960-01-01"}.items():
        monkeypatch.setenv(key, value)
    settings = get_settings()
    assert settings.lookback_days == 3
    # The rows pass ingestion as they would have before dbt's FX seed lost its early USD rates (the runbook's
    # "the FX seed changed after the line was loaded"): ingestion checks against a seed that still has them.
    seed = tmp_path / "fx_rates.csv"
    seed.write_text(Path(settings.dbt_project_dir, "seeds", "fx_rates.csv").read_text().rstrip("\n") + "\nEUR,1960-01-01,1\nUSD,1960-01-01,0.9\n")
    monkeypatch.setattr("c360.ingest.load.fx_seed_path", lambda _settings: seed)

    land(settings, f"transactions/dt={NIGHT_A}/orders.csv",
         "o1,c1,2026-03-01T10:00:00Z,1,p1,10,EUR", "o2,c2,2026-03-01T12:00:00Z,1,p1,7,EUR")
    assert night(settings, NIGHT_A).success
    land(settings, BAD_FILE, "o3,c3,2026-03-02T09:00:00Z,1,p1,3,EUR", *BAD_LINES)
    with pytest.raises(transform.DbtRunError) as failed:
        night(settings, NIGHT_B)
    assert "not_null_int_order_lines_amount_eur" in str(failed.value)
    assert {t.name for t in failed.value.failed_tests} == {"not_null_int_order_lines_amount_eur"}
    assert failed.value.failed_tests[0].files == [BAD_FILE]  # the message names the file to fix
    # the failed night left the rows in the models it built
    assert rows(settings, "SELECT count(*) FROM intermediate.int_order_lines WHERE amount_eur IS NULL") == [(2,)]
    assert rows(settings, "SELECT count(*) FROM intermediate.int_customer_daily_orders "
                          "WHERE activity_date = DATE '1965-03-01'") == [(2,)]

    assert rows(settings, "SELECT interaction_id FROM feature_store.interactions ORDER BY 1") == [
        ("order:o1|1|sale",), ("order:o2|1|sale",)]  # night B stopped before the interactions

    # the file is replaced without the bad rows, and night A's file without its order o2 (a wrong order, say);
    # the next night is 8 days later, both files are older than its 3-day lookback
    land(settings, BAD_FILE, "o3,c3,2026-03-02T09:00:00Z,1,p1,3,EUR")
    land(settings, f"transactions/dt={NIGHT_A}/orders.csv", "o1,c1,2026-03-01T10:00:00Z,1,p1,10,EUR")
    land(settings, f"transactions/dt={NIGHT_C}/orders.csv", "o4,c4,2026-03-10T08:00:00Z,1,p1,4,EUR")
    assert night(settings, NIGHT_C).success

    # no table of the warehouse holds the removed lines (raw.transactions_removed is the record of them)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        tables = con.execute(
            """SELECT table_schema, table_name, list(column_name) FROM information_schema.columns
               WHERE column_name IN ('order_id', 'line_key', 'interaction_id')
                 AND NOT (table_schema = 'raw' AND table_name = 'transactions_removed')
               GROUP BY ALL ORDER BY ALL""").fetchall()
        assert {f"{s}.{t}" for s, t, _ in tables} >= {"raw.transactions", "intermediate.int_order_lines",
                                                       "marts.fct_orders", "feature_store.interactions"}
        for schema, table, columns in tables:
            for column in columns:
                found = con.execute(
                    f'SELECT count(*) FROM {schema}.{table} WHERE "{column}" IN (\'obad\', \'o2\') '
                    f"OR \"{column}\" SIMILAR TO '(order:)?(obad|o2|o1\\|2)\\|.*'").fetchone()[0]
                assert found == 0, f"{schema}.{table}.{column} still holds a removed line"
        assert con.execute("SELECT order_id, line_id FROM raw.transactions_removed ORDER BY ALL").fetchall() == [
            ("o1", 1), ("o1", 2), ("o2", 1), ("o3", 1), ("obad", 1)]  # o1, o3 reloaded with their files
    # what the removed lines had added is gone too: o1 is its first line only, their customer-days are gone
    assert rows(settings, "SELECT order_id, net_revenue_eur FROM marts.fct_orders ORDER BY 1") == [
        ("o1", 10), ("o3", 3), ("o4", 4)]
    assert rows(settings, "SELECT customer_id, activity_date::VARCHAR, gross_revenue_eur "
                          "FROM intermediate.int_customer_daily_orders ORDER BY ALL") == [
        ("c1", "2026-03-01", 10), ("c3", "2026-03-02", 3), ("c4", "2026-03-10", 4)]
    assert rows(settings, "SELECT line_key FROM intermediate.int_order_lines ORDER BY 1") == [
        ("o1|1|sale",), ("o3|1|sale",), ("o4|1|sale",)]
    assert rows(settings, "SELECT interaction_id FROM feature_store.interactions ORDER BY 1") == [
        ("order:o1|1|sale",), ("order:o3|1|sale",), ("order:o4|1|sale",)]
    # and the night's feature snapshot: the running order totals (fs_customer_order_totals, recomputed only for the
    # customers whose states changed) drop c2, whose only order went, and c1's removed 1965 line
    assert rows(settings, "SELECT customer_id, orders_count, gross_revenue_eur, first_order_date::VARCHAR "
                          "FROM feature_store.customer_features WHERE as_of_date = ? ORDER BY 1", [NIGHT_C]) == [
        ("c1", 1, 10, "2026-03-01"), ("c3", 1, 3, "2026-03-02"), ("c4", 1, 4, "2026-03-10")]
