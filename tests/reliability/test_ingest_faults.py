"""Faults in landed files (issue #13, items 5, 6): an unreadable file is named with what to do and nothing of the
entity's run is committed; a drifted header rejects the file; too much quarantine fails the entity."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import zipfile
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360.ingest.load import ingest
from c360.ingest.readers import UnreadableFile
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

D0 = date(2026, 3, 9)
D = date(2026, 3, 10)


def q(settings, sql):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def orders(day, prefix, n=3):
    return ("customer_id,order_id,ordered_at,amount\n"
            + "".join(f"c{j},{prefix}-{j},{day}T10:00:00Z,{j + 1}\n" for j in range(n))).encode()


def snapshot(settings):
    return [q(settings, f"SELECT * EXCLUDE (_loaded_at) FROM raw.{t} ORDER BY ALL")
            for t in ("transactions", "customers")] + [
        q(settings, "SELECT * EXCLUDE (quarantined_at) FROM raw.quarantine ORDER BY ALL"),
        q(settings, "SELECT * EXCLUDE (loaded_at, seconds) FROM raw.ingest_audit ORDER BY ALL"),
    ]


@pytest.fixture
def loaded_night(c360_env):
    """A first night (D0) loaded: its state must survive every fault below."""
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D0}/part-0.csv", orders(D0, "d0"))
    store.write_bytes(f"customers/dt={D0}/c.csv", b"customer_id,email\nc1,a@x.org\n")
    ingest(D0, c360_env)
    return store


def _parquet_bytes():
    buf = io.BytesIO()
    pq.write_table(pa.table({"customer_id": ["c1"], "order_id": ["p"], "ordered_at": ["2026-03-10T10:00:00Z"],
                             "amount": ["1"]}), buf)
    return buf.getvalue()


BAD_FILES = {
    "random-bytes.csv": random.Random(13).randbytes(4096),
    "latin1.csv": "customer_id,order_id,ordered_at,amount\nc1,Café-1,2026-03-10T10:00:00Z,1\n".encode("latin-1"),
    "truncated.csv.gz": gzip.compress(orders(D, "gz", 50))[:-20],
    "not-gzip.csv.gz": b"plain text, not gzip",
    "truncated.parquet": _parquet_bytes()[:-30],
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_an_unreadable_file_names_itself_and_commits_nothing(c360_env, loaded_night, name):
    before = snapshot(c360_env)
    loaded_night.write_bytes(f"transactions/dt={D}/a-good.csv", orders(D, "good"))
    loaded_night.write_bytes(f"transactions/dt={D}/{name}", BAD_FILES[name])
    loaded_night.write_bytes(f"transactions/dt={D}/z-good.csv", orders(D, "z"))

    with pytest.raises(UnreadableFile) as err:
        ingest(D, c360_env, ["transactions"])

    msg = str(err.value)
    assert f"transactions/dt={D}/{name}" in msg  # the key relative to the landing root...
    assert loaded_night.uri_of(f"transactions/dt={D}/{name}") in msg  # ...and where it is
    assert "Re-land the file (or remove it from the landing zone)" in msg
    assert "Nothing of transactions was loaded" in msg
    assert snapshot(c360_env) == before  # previous state intact, the good files of the date not half-loaded


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, data)
    return buf.getvalue()


# Real archives of a valid orders file: every row would be lost if the file were skipped (the old behaviour: a
# warning in the task log) or read as something else.
CSV = orders(D, "packed", 5)
UNSUPPORTED = {
    "x.csv.bz2": (bz2.compress(CSV), "compressed as .bz2, which ingestion does not read (gzip only)"),
    "x.csv.zip": (_zip("x.csv", CSV), "compressed as .zip, which ingestion does not read (gzip only)"),
    "x.csv.xz": (lzma.compress(CSV), "compressed as .xz, which ingestion does not read (gzip only)"),
    "x.csv.zst": (b"\x28\xb5\x2f\xfd" + CSV, "compressed as .zst, which ingestion does not read (gzip only)"),
    "x.parquet.gz": (gzip.compress(_parquet_bytes()), "a gzipped Parquet file, which ingestion does not read"),
    "x.jsonl": (b'{"customer_id": "c1"}\n', "a .jsonl file, which transactions does not take"),
    "x.txt": (CSV, "unsupported file type .txt"),
    "orders": (CSV, "unsupported file type (no extension)"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_an_unsupported_file_type_fails_the_entity_naming_it_and_loads_nothing(c360_env, loaded_night, name):
    data, why = UNSUPPORTED[name]
    before = snapshot(c360_env)
    key = f"transactions/dt={D}/{name}"
    loaded_night.write_bytes(f"transactions/dt={D}/a-good.csv", orders(D, "good"))
    loaded_night.write_bytes(key, data)
    loaded_night.write_bytes(f"transactions/dt={D}/_SUCCESS", b"")  # a marker: never read, never a fault

    with pytest.raises(UnreadableFile) as err:
        ingest(D, c360_env, ["transactions"])
    msg = str(err.value)
    assert f"{loaded_night.uri_of(key)} ({key}: {why}" in msg, msg  # where it is, its key and why
    assert "re-land it as .csv, .csv.gz or .parquet" in msg  # what the folder takes (docs/landing_contract.md)
    assert "rename it to start with '_' or remove it" in msg
    assert "Nothing of transactions was loaded" in msg
    assert snapshot(c360_env) == before  # the date's good file is not loaded either: all or nothing
    assert q(c360_env, f"SELECT count(*) FROM raw.transactions WHERE _dt = '{D}'") == [(0,)]

    # a non-data file renamed to a temporary name is no longer in the way; the date then loads, once
    os.rename(loaded_night.root / key, loaded_night.root / f"transactions/dt={D}/_{name}")
    result = ingest(D, c360_env, ["transactions"]).entities["transactions"]
    assert (result.files, result.loaded) == (1, 3)


def test_a_partition_holding_only_an_unsupported_file_is_named_not_waited_for(c360_env, loaded_night):
    from c360.ingest.landing import partition_ready

    loaded_night.write_bytes(f"transactions/dt={D}/only.csv.bz2", bz2.compress(CSV))
    assert partition_ready(loaded_night, "transactions", D)  # the sensor stops waiting: nothing more will come
    with pytest.raises(UnreadableFile, match=f"transactions/dt={D}/only.csv.bz2: compressed as .bz2"):
        ingest(D, c360_env, ["transactions"])


def test_binary_csv_reports_the_byte_not_a_bare_unicode_error(c360_env, loaded_night):
    loaded_night.write_bytes(f"transactions/dt={D}/bin.csv", b"customer_id,order_id\n\xff\xfe\x00garbage\n")
    with pytest.raises(UnreadableFile, match=r"not UTF-8 text \(byte 0xff at offset 21, line 2\)"):
        ingest(D, c360_env, ["transactions"])


def test_a_300_file_date_with_one_random_file_loads_all_or_nothing(c360_env, loaded_night, monkeypatch):
    before = snapshot(c360_env)
    root = loaded_night.root / f"transactions/dt={D}"
    root.mkdir(parents=True)
    for i in range(300):  # plain writes: 300 atomic renames would only slow the test
        (root / f"part-{i:03d}.csv").write_bytes(orders(D, f"p{i}", 2))
    (root / "part-257.csv").write_bytes(os.urandom(2048))  # in the fifth batch of 64

    with pytest.raises(UnreadableFile, match=f"transactions/dt={D}/part-257.csv"):
        ingest(D, c360_env, ["transactions"])
    assert snapshot(c360_env) == before  # none of the 256 files of the first four batches is committed
    # the batches were staged as Parquet beside the warehouse (so a year's catch-up does not hold every row in
    # memory until the commit); the staging folder goes with the failure too
    assert not list(c360_env.warehouse_path.parent.glob(".ingest-*"))

    # after the file is re-landed, the whole date loads, once
    (root / "part-257.csv").write_bytes(orders(D, "p257", 2))
    result = ingest(D, c360_env, ["transactions"])
    assert (result.entities["transactions"].files, result.entities["transactions"].loaded) == (300, 600)
    assert q(c360_env, f"SELECT count(*), count(DISTINCT order_id) FROM raw.transactions WHERE _dt = '{D}'") == [(600, 600)]
    assert reconcile(c360_env)["landed"] == 600 + 3 + 1  # this date, D0's orders, D0's customer
    assert not list(c360_env.warehouse_path.parent.glob(".ingest-*"))


DRIFTED = ("cust_id,order_id,ordered_at,total_amount\n"
           + "".join(f"c{j},o{j},2026-03-10T10:00:00Z,{j}\n" for j in range(120))).encode()


def test_a_drifted_header_rejects_the_whole_file_and_fails_the_entity(c360_env, loaded_night):
    before = snapshot(c360_env)
    loaded_night.write_bytes(f"transactions/dt={D}/drifted.csv", DRIFTED)

    from c360.ingest.load import QuarantineRateExceeded

    with pytest.raises(QuarantineRateExceeded) as err:
        ingest(D, c360_env, ["transactions"])
    msg = str(err.value)
    assert f"dt={D}: 120 of 120 rows quarantined (100.0%); top reasons: schema_mismatch 120" in msg
    assert "drifted.csv: 120 rows schema_mismatch (first at line 2: missing column(s) customer_id, amount" in msg
    assert "unknown column(s) cust_id, total_amount" in msg
    assert "Nothing of transactions was committed" in msg and "C360_MAX_QUARANTINE_RATE" in msg
    assert snapshot(c360_env) == before


def test_with_the_rate_raised_the_drifted_rows_are_quarantined_and_counted(c360_env, loaded_night, monkeypatch):
    from c360.config import get_settings

    monkeypatch.setenv("C360_MAX_QUARANTINE_RATE", "1.0")
    loaded_night.write_bytes(f"transactions/dt={D}/drifted.csv", DRIFTED)
    loaded_night.write_bytes(f"transactions/dt={D}/good.csv", orders(D, "g"))
    result = ingest(D, get_settings(), ["transactions"])
    t = result.entities["transactions"]
    assert (t.landed, t.loaded, t.quarantined, dict(t.reasons)) == (123, 3, 120, {"schema_mismatch": 120})
    details = q(c360_env, "SELECT DISTINCT detail FROM raw.quarantine WHERE reason = 'schema_mismatch'")
    assert len(details) == 1 and details[0][0].startswith("missing column(s) customer_id, amount (or quantity")
    # the record keeps the drifted columns, so the rows can be fixed and re-landed
    assert q(c360_env, "SELECT record FROM raw.quarantine WHERE source_line = 2")[0][0] == \
        '{"cust_id":"c0","order_id":"o0","ordered_at":"2026-03-10T10:00:00Z","total_amount":"0"}'
    assert reconcile(c360_env)["landed"] == 123 + 3 + 1


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_unknown_columns_in_parquet_and_json_are_a_schema_mismatch(c360_env, monkeypatch, fmt):
    from c360.config import get_settings

    monkeypatch.setenv("C360_MAX_QUARANTINE_RATE", "1.0")
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D}/ok.csv", orders(D, "ok"))
    if fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(pa.table({"Customer_ID ": ["c1"], "order_id": ["p"], "ordered_at": ["2026-03-10T10:00:00Z"],
                                 "amount": [1.0], "coupon": ["X"]}), buf)
        store.write_bytes(f"transactions/dt={D}/p.parquet", buf.getvalue())
        entity, expected, n = "transactions", "unknown column(s) coupon", 1
    else:
        ev = '{"event_id":"e%d","event_type":"page_view","occurred_at":"2026-03-10T10:00:00Z","anonymous_id":"a"%s}'
        store.write_bytes(f"tracking/dt={D}/t.jsonl", (ev % (1, "") + "\n" + ev % (2, ',"vendor_x":1') + "\n").encode())
        entity, expected, n = "tracking", "unknown column(s) vendor_x", 2
    result = ingest(D, get_settings())
    assert dict(result.entities[entity].reasons) == {"schema_mismatch": n}
    assert q(c360_env, "SELECT DISTINCT detail FROM raw.quarantine")[0][0].startswith(expected)


def test_a_small_dirty_date_is_below_the_judged_size_and_loads(c360_env, loaded_night):
    """Under C360_QUARANTINE_RATE_MIN_ROWS rows a date is not judged: 1 bad row of 4 is noise, not a broken feed."""
    loaded_night.write_bytes(f"transactions/dt={D}/a.csv", orders(D, "a") + b"c9,bad,not-a-date,1\n")
    t = ingest(D, c360_env, ["transactions"]).entities["transactions"]
    assert (t.loaded, t.quarantined) == (3, 1)


def test_a_rate_above_the_threshold_on_a_judged_date_fails(c360_env, loaded_night, monkeypatch):
    from c360.config import get_settings
    from c360.ingest.load import QuarantineRateExceeded

    monkeypatch.setenv("C360_QUARANTINE_RATE_MIN_ROWS", "10")
    body = orders(D, "a", 18) + b"c9,bad1,not-a-date,1\nc9,bad2,not-a-date,1\n"  # 2 of 20 = 10 % > 5 %
    loaded_night.write_bytes(f"transactions/dt={D}/a.csv", body)
    with pytest.raises(QuarantineRateExceeded, match=r"2 of 20 rows quarantined \(10.0%\); top reasons: invalid_timestamp 2"):
        ingest(D, get_settings(), ["transactions"])
    monkeypatch.setenv("C360_MAX_QUARANTINE_RATE", "0.1")  # 10 % is not above 10 %
    assert ingest(D, get_settings(), ["transactions"]).entities["transactions"].quarantined == 2
