"""Faults in landed files (issue #13, items 5, 6): an unreadable file is named with what to do and nothing of the
entity's run is committed; a drifted header rejects the file; too much quarantine fails the entity."""

from __future__ import annotations

import gzip
import io
import os
import random
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

    # after the file is re-landed, the whole date loads, once
    (root / "part-257.csv").write_bytes(orders(D, "p257", 2))
    result = ingest(D, c360_env, ["transactions"])
    assert (result.entities["transactions"].files, result.entities["transactions"].loaded) == (300, 600)
    assert q(c360_env, f"SELECT count(*), count(DISTINCT order_id) FROM raw.transactions WHERE _dt = '{D}'") == [(600, 600)]
    assert reconcile(c360_env)["landed"] == 600 + 3 + 1  # this date, D0's orders, D0's customer
