"""Ingestion: every landed record is loaded or quarantined with its reason; reruns replace, never duplicate."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import textwrap
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360.ingest.landing import LandingPartitionMissing, wait_for_partition
from c360.ingest.load import ingest
from c360.ingest.readers import UnreadableFile
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage

D = date(2026, 3, 10)
HEADER = "order_id,line_id,customer_id,ordered_at,amount,quantity,unit_price,currency,line_type,is_test,updated_at"


def land(settings, key: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    LocalStorage(settings.landing_uri).write_bytes(key, data)


def csv(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def rows(settings, sql: str):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# line number in the file -> the reason that line must get (None = loaded)
CASES = [
    ("o1,1,c1,2026-03-10T10:00:00+01:00,10.5,,,EUR,,,", None),
    ("o2,1,c2,2026-03-10T11:00:00Z,,2,3.5,usd,sale,false,", None),
    ("o2,1,c2,2026-03-10T11:00:00Z,,2,3.5,usd,sale,false,", "duplicate_row"),
    ("o3,1,,2026-03-10T11:00:00Z,5,,,EUR,,,", "missing_customer_id"),
    (",1,c4,2026-03-10T11:00:00Z,5,,,EUR,,,", "missing_required"),
    ("o5,1,c5,yesterday,5,,,EUR,,,", "invalid_timestamp"),
    ("o6,1,c6,2026-03-10T11:00:00Z,five,,,EUR,,,", "invalid_number"),
    ("o7,1,c7,2026-03-10T11:00:00Z,,2,,EUR,,,", "missing_amount"),
    ("o8,1,c8,2026-03-10T11:00:00Z,5,,,EUR,exchange,,", "invalid_value"),
    ("o9,1,c9,2026-03-10T11:00:00Z,5,,,XXX,,,", "unknown_currency"),
    ("o10,1,c10,2026-03-10T11:00:00Z,-5,-1,5,EUR,sale,,", "negative_quantity"),
    ("o11,1,c11,2026-03-10T11:00:00Z,-5,-1,5,EUR,return,,", "return_without_sale"),  # no sale of o11 anywhere
    ("o12,1,c12,2026-03-14T11:00:00Z,5,,,EUR,,,", "future_timestamp"),
    ("o13,1,c13,2026-03-10T11:00:00Z,5,,,EUR,,true,", "test_order"),
    ("o14,1,c14,2026-03-10T11:00:00Z,5,EUR", "malformed_record"),
    ("o15,1,c15,2026-03-10T20:30:00-05:00,5,,,EUR,,,", None),  # 01:30 UTC next day: within tolerance
]


def test_every_rule_quarantines_its_row_with_reason_and_line(c360_env):
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv(*(r for r, _ in CASES)))
    result = ingest(D, c360_env)

    got = dict(rows(c360_env, "SELECT source_line, reason FROM raw.quarantine"))
    expected = {i + 2: reason for i, (_, reason) in enumerate(CASES) if reason}
    assert got == expected
    loaded_lines = {r[0] for r in rows(c360_env, "SELECT _source_line FROM raw.transactions")}
    assert loaded_lines == {i + 2 for i, (_, reason) in enumerate(CASES) if reason is None}
    t = result.entities["transactions"]
    assert (t.landed, t.loaded, t.quarantined) == (len(CASES), 3, len(CASES) - 3)


def test_values_are_typed_normalised_and_defaulted(c360_env):
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv(*(r for r, _ in CASES[:2])))
    ingest(D, c360_env)
    got = rows(
        c360_env,
        "SELECT order_id, ordered_at, amount, currency FROM raw.transactions ORDER BY order_id",
    )
    assert [(r[0], r[1].isoformat(), float(r[2]), r[3]) for r in got] == [
        ("o1", "2026-03-10T09:00:00+00:00", 10.5, "EUR"),  # offset converted to UTC
        ("o2", "2026-03-10T11:00:00+00:00", 7.0, "USD"),  # amount = quantity * unit_price
    ]


def test_audit_reconciles_landed_with_loaded_plus_quarantined(c360_env):
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv(*(r for r, _ in CASES)))
    land(c360_env, f"transactions/dt={D}/part-1.csv", csv(CASES[0][0], "o99,1,c9,2026-03-10T11:00:00Z,1,,,EUR,,,"))
    ingest(D, c360_env)
    audit = rows(c360_env, "SELECT source_file, landed_rows, loaded_rows, quarantined_rows FROM raw.ingest_audit ORDER BY 1")
    assert [(r[1], r[2], r[3]) for r in audit] == [(16, 3, 13), (2, 1, 1)]  # part-1's first row repeats part-0's
    assert reconcile(c360_env, D) == {"files": 2, "landed": 18, "loaded": 4, "quarantined": 14}


@pytest.mark.reliability
def test_rerun_of_a_date_replaces_instead_of_duplicating(c360_env):
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv(*(r for r, _ in CASES)))
    ingest(D, c360_env)
    snapshot = "SELECT * EXCLUDE (_loaded_at) FROM raw.transactions ORDER BY _source_line"
    first = rows(c360_env, snapshot)
    first_q = rows(c360_env, "SELECT * EXCLUDE (quarantined_at) FROM raw.quarantine ORDER BY source_line")
    ingest(D, c360_env)
    assert rows(c360_env, snapshot) == first
    assert rows(c360_env, "SELECT * EXCLUDE (quarantined_at) FROM raw.quarantine ORDER BY source_line") == first_q
    assert rows(c360_env, "SELECT count(*) FROM raw.ingest_audit") == [(1,)]


@pytest.mark.reliability
def test_late_files_are_picked_up_once_and_history_loads_on_first_run(c360_env):
    for i, day in enumerate([date(2026, 3, 8), date(2026, 3, 9), D]):
        land(c360_env, f"transactions/dt={day}/part-0.csv", csv(f"o{i},1,c1,{day}T10:00:00Z,1,,,EUR,,,"))
    ingest(D, c360_env)  # first run: loads the two earlier partitions too
    assert rows(c360_env, "SELECT count(*) FROM raw.transactions") == [(3,)]

    # a file lands late in an already-loaded partition; the next night loads it
    land(c360_env, "transactions/dt=2026-03-09/part-late.csv", csv("late,1,c1,2026-03-09T12:00:00Z,2,,,EUR,,,"))
    nxt = date(2026, 3, 11)
    land(c360_env, f"transactions/dt={nxt}/part-0.csv", csv(f"o9,1,c1,{nxt}T10:00:00Z,1,,,EUR,,,"))
    ingest(nxt, c360_env)
    ingest(nxt, c360_env)  # rerun
    ingest(date(2026, 3, 9), c360_env)  # backfill of the late file's own date
    got = rows(c360_env, "SELECT order_id, count(*) FROM raw.transactions GROUP BY 1 ORDER BY 1")
    assert got == [("late", 1), ("o0", 1), ("o1", 1), ("o2", 1), ("o9", 1)]


def test_changed_file_is_reloaded_and_replaces_its_rows(c360_env):
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,1,,,EUR,,,"))
    ingest(D, c360_env)
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,3,,,EUR,,,"))
    ingest(D, c360_env)
    assert [float(r[0]) for r in rows(c360_env, "SELECT amount FROM raw.transactions")] == [3.0]


@pytest.mark.reliability
def test_resent_line_with_changed_payload_is_loaded_as_a_new_version(c360_env):
    land(c360_env, f"transactions/dt={D}/a.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,1,,,EUR,,,2026-03-10T10:00:00Z"))
    land(c360_env, f"transactions/dt={D}/b.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,2,,,EUR,,,2026-03-10T12:00:00Z"))
    ingest(D, c360_env)
    assert rows(c360_env, "SELECT count(*), count(DISTINCT amount) FROM raw.transactions") == [(2, 2)]
    assert rows(c360_env, "SELECT count(*) FROM raw.quarantine") == [(0,)]


def test_minimal_transactions_only_input_loads(c360_env):
    land(c360_env, f"transactions/dt={D}/orders.csv",
         "customer_id,order_id,ordered_at,amount\nc1,o1,2026-03-10 08:00:00,12.5\nc2,o2,2026-03-10T09:00:00+02:00,3\n")
    result = ingest(D, c360_env)
    assert result.entities["transactions"].loaded == 2
    assert result.entities["tracking"].files == 0
    # optional entities have empty tables, so downstream SQL works on transactions-only input
    assert rows(c360_env, "SELECT count(*) FROM raw.tracking_events") == [(0,)]


def test_parquet_and_gzipped_csv_inputs(c360_env):
    table = pa.table({
        "order_id": ["p1", "p2"],
        "customer_id": ["c1", "c2"],
        "ordered_at": pa.array([1773136800000000, 1773140400000000], pa.timestamp("us", tz="UTC")),
        "amount": [1.5, -2.0],
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    land(c360_env, f"transactions/dt={D}/a.parquet", buf.getvalue())
    land(c360_env, f"transactions/dt={D}/b.csv.gz", gzip.compress(csv("g1,1,c1,2026-03-10T10:00:00Z,1,,,EUR,,,").encode()))
    ingest(D, c360_env)
    assert rows(c360_env, "SELECT order_id FROM raw.transactions ORDER BY 1") == [("g1",), ("p1",)]
    assert rows(c360_env, "SELECT reason FROM raw.quarantine") == [("negative_quantity",)]


def test_tracking_json_lines(c360_env):
    ev = '{"event_id":"%s","event_type":"%s","occurred_at":"2026-03-10T10:00:00+02:00","anonymous_id":"a1","quantity":2}'
    lines = [ev % ("e1", "page_view"), "{not json", "", ev % ("e1", "page_view"), ev % ("e2", "teleport"), "[1,2]",
             '{"event_id":"e3","event_type":"login","anonymous_id":"a1"}']
    land(c360_env, f"tracking/dt={D}/events.jsonl.gz", gzip.compress("\n".join(lines).encode()))
    land(c360_env, f"transactions/dt={D}/t.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,1,,,EUR,,,"))
    ingest(D, c360_env)
    got = rows(c360_env, "SELECT source_line, reason FROM raw.quarantine ORDER BY 1")
    assert got == [(2, "malformed_record"), (4, "duplicate_row"), (5, "invalid_value"), (6, "malformed_record"),
                   (7, "missing_required")]
    assert rows(c360_env, "SELECT event_id, quantity, occurred_at::VARCHAR FROM raw.tracking_events") == [
        ("e1", 2, "2026-03-10 08:00:00+00")
    ]


def test_missing_partition_fails_clearly(c360_env):
    land(c360_env, "transactions/dt=2026-03-09/t.csv", csv("o1,1,c1,2026-03-09T10:00:00Z,1,,,EUR,,,"))
    with pytest.raises(LandingPartitionMissing, match=r"transactions/dt=2026-03-10/.*latest transactions partition: 2026-03-09"):
        ingest(D, c360_env)
    with pytest.raises(LandingPartitionMissing, match="after waiting"):
        wait_for_partition(LocalStorage(c360_env.landing_uri), "transactions", D, timeout=0.3, poke=0.1)


def test_unreadable_file_fails_naming_it(c360_env):
    land(c360_env, f"transactions/dt={D}/broken.csv.gz", b"this is not gzip")
    with pytest.raises(UnreadableFile, match="broken.csv.gz: not a valid gzip"):
        ingest(D, c360_env)


@pytest.mark.reliability
def test_second_process_holding_the_warehouse_gets_a_clear_error(c360_env, tmp_path):
    from c360.pipeline.warehouse import WarehouseLocked

    land(c360_env, f"transactions/dt={D}/t.csv", csv("o1,1,c1,2026-03-10T10:00:00Z,1,,,EUR,,,"))
    ingest(D, c360_env)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(c360_env.warehouse_path)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseLocked, match="locked by another process.*one writer at a time"):
            ingest(D, c360_env)
    finally:
        holder.kill()
        holder.wait()
    # the file is intact and still holds the first load
    assert rows(c360_env, "SELECT count(*) FROM raw.transactions") == [(1,)]
