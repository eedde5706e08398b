"""The landing zone on S3, through a real moto S3 server over HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import date

import duckdb
import pytest

from c360.ingest.load import ingest
from c360.storage import S3Storage, StorageUnreachable, open_storage

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


def test_s3_client_uses_botocore_retry_mode_and_attempts_from_settings(monkeypatch, moto_s3_server):
    monkeypatch.setenv("C360_S3_RETRY_MODE", "adaptive")
    monkeypatch.setenv("C360_S3_MAX_ATTEMPTS", "3")
    store = open_storage("s3://any-bucket/x", endpoint_url=moto_s3_server)
    assert store.client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 3}
    monkeypatch.setenv("C360_S3_RETRY_MODE", "sometimes")
    with pytest.raises(ValueError, match="C360_S3_RETRY_MODE='sometimes' must be standard, adaptive or legacy"):
        open_storage("s3://any-bucket/x", endpoint_url=moto_s3_server)


@pytest.fixture
def fake_credentials(monkeypatch):
    """Credentials, so that the unreachable endpoint is what fails: without any (a lone run, e.g. `-m reliability`,
    with no s3_bucket test before it), botocore stops at 'No credentials' before it ever connects."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.mark.reliability
def test_an_unreachable_endpoint_fails_fast_with_one_line_naming_it(monkeypatch, fake_credentials):
    from tests.conftest import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    monkeypatch.setenv("C360_S3_MAX_ATTEMPTS", "2")
    store = open_storage("s3://landing-bucket/shop", endpoint_url=endpoint)
    for call in (lambda: store.list("transactions"), lambda: store.read_bytes("a.csv"),
                 lambda: store.write_bytes("a.csv", b"x"), lambda: store.exists("a.csv")):
        started = time.monotonic()
        with pytest.raises(StorageUnreachable) as err:
            call()
        assert time.monotonic() - started < 15
        message = str(err.value)
        assert "\n" not in message and f"S3 endpoint {endpoint} unreachable after 2 attempt(s)" in message
        assert "s3://landing-bucket/shop" in message and "C360_S3_ENDPOINT_URL" in message


@pytest.mark.reliability
def test_the_cli_ends_an_unreachable_landing_zone_with_that_line_and_no_traceback(c360_env, monkeypatch, capfd,
                                                                                    fake_credentials):
    from c360.cli import main
    from tests.conftest import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LANDING_URI", "s3://landing-bucket/shop")
    monkeypatch.setenv("C360_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("C360_S3_MAX_ATTEMPTS", "2")
    started = time.monotonic()

    assert main(["ingest", "--date", "2026-01-02"]) == 1

    assert time.monotonic() - started < 20
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"c360 ingest: S3 endpoint {endpoint} unreachable after 2 attempt(s)")
    assert not any("Traceback" in line for line in err)
