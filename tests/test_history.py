"""Initial load: one big history file is spread into daily partitions by each row's own date, then loaded once."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from c360.ingest.history import spread_history
from c360.ingest.load import ingest
from c360.storage import LocalStorage


def test_history_file_spreads_by_row_date_and_loads_once(c360_env, tmp_path):
    history = tmp_path / "orders.csv"
    history.write_text(
        "customer_id,order_id,ordered_at,amount\n"
        "c1,o1,2024-01-01T23:30:00-02:00,10\n"  # 01:30 UTC on Jan 2
        "c2,o2,2024-01-01T10:00:00Z,20\n"
        "c1,o3,2024-06-30T10:00:00Z,30\n"
        "c3,o4,not a date,40\n"
        "c3,o5,2024-06-30T11:00:00Z\n"  # malformed: missing a field
    )
    store = LocalStorage(c360_env.landing_uri)
    counts = spread_history(history, "transactions", store)
    assert counts == {date(2024, 1, 1): 1, date(2024, 1, 2): 1, date(2024, 6, 30): 3}

    result = ingest(date(2024, 6, 30), c360_env)  # the first nightly loads all history
    t = result.entities["transactions"]
    assert (t.files, t.landed, t.loaded, t.quarantined) == (4, 5, 3, 2)
    assert dict(t.reasons) == {"invalid_timestamp": 1, "malformed_record": 1}
    con = duckdb.connect(str(c360_env.warehouse_path), read_only=True)
    assert con.execute("SELECT order_id, _dt::VARCHAR FROM raw.transactions ORDER BY 1").fetchall() == [
        ("o1", "2024-01-02"), ("o2", "2024-01-01"), ("o3", "2024-06-30")]
    con.close()

    # the next night only loads its own partition
    store.write_bytes("transactions/dt=2024-07-01/n.csv", b"customer_id,order_id,ordered_at,amount\nc1,o6,2024-07-01T10:00:00Z,5\n")
    nxt = ingest(date(2024, 7, 1), c360_env).entities["transactions"]
    assert (nxt.files, nxt.loaded) == (1, 1)


def test_a_json_lines_history_for_a_table_entity_is_refused_not_landed_unread(c360_env, tmp_path):
    history = tmp_path / "orders.jsonl"
    history.write_text('{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01T10:00:00Z", "amount": 1}\n')
    store = LocalStorage(c360_env.landing_uri)
    with pytest.raises(ValueError, match="JSON lines are landed for tracking only; convert it to .csv or .parquet"):
        spread_history(history, "transactions", store)
    assert store.list("transactions") == []
