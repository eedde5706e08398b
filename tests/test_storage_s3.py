"""The landing zone on S3, through a real moto S3 server over HTTP on 127.0.0.1."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from c360.ingest.load import ingest
from c360.storage import S3Storage, open_storage

pytestmark = pytest.mark.s3


def test_storage_roundtrip_list_and_dirs(s3_bucket, moto_s3_server):
    store = open_storage(f"s3://{s3_bucket}/landing", endpoint_url=moto_s3_server)
    assert isinstance(store, S3Storage)
    store.write_bytes("transactions/dt=2026-01-01/a.csv", b"x")
    store.write_bytes("transactions/dt=2026-01-02/b.csv", b"yy")
    assert store.list_dirs("transactions") == ["dt=2026-01-01", "dt=2026-01-02"]
    assert [(f.key, f.size) for f in store.list("transactions")] == [
        ("transactions/dt=2026-01-01/a.csv", 1), ("transactions/dt=2026-01-02/b.csv", 2)]
    assert store.read_bytes("transactions/dt=2026-01-02/b.csv") == b"yy"
    with store.local_copy("transactions/dt=2026-01-02/b.csv") as p:
        assert p.read_bytes() == b"yy"
    assert store.delete_prefix("transactions/dt=2026-01-01") == 1
    assert store.uri_of("x") == f"s3://{s3_bucket}/landing/x"


def test_ingest_from_s3_landing_zone(c360_env, s3_bucket, moto_s3_server, monkeypatch):
    from c360.config import get_settings

    monkeypatch.setenv("LANDING_URI", f"s3://{s3_bucket}/landing")
    settings = get_settings()
    store = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    store.write_bytes("transactions/dt=2026-01-02/a.csv",
                      b"customer_id,order_id,ordered_at,amount\nc1,o1,2026-01-02T10:00:00Z,5\n,o2,2026-01-02T10:00:00Z,5\n")
    result = ingest(date(2026, 1, 2), settings)
    assert (result.entities["transactions"].loaded, result.entities["transactions"].quarantined) == (1, 1)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert con.execute("SELECT _source_file FROM raw.transactions").fetchall() == [
        ("transactions/dt=2026-01-02/a.csv",)]  # relative to the landing root: the bucket may move
    con.close()
