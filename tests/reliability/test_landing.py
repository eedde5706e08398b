"""Hostile landing zones (issue #13, item 2): the pipeline reads only regular files directly inside
<entity>/dt=<day>/ under the landing root; symbolic links, sub-folders and keys that leave the root are never read."""

from __future__ import annotations

import logging
import os
from datetime import date

import boto3
import duckdb
import pytest

from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage, S3Storage, UnsafeKey

pytestmark = pytest.mark.reliability

D = date(2026, 3, 10)
GOOD = "customer_id,order_id,ordered_at,amount\nc1,o1,2026-03-10T10:00:00Z,5\nc2,o2,2026-03-10T11:00:00Z,7\n"
SECRET = "customer_id,order_id,ordered_at,amount\nSECRET,s1,2026-03-10T10:00:00Z,1\n"


def q(settings, sql):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def outside(tmp_path):
    """A folder outside the landing root holding a file that looks like valid landing data."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.csv").write_text(SECRET)
    return d


def _everything_loaded_or_quarantined(settings):
    text = " ".join(str(r) for r in q(settings, "SELECT * FROM raw.transactions"))
    text += " ".join(str(r) for r in q(settings, "SELECT * FROM raw.quarantine"))
    return text


def test_symlinked_file_in_a_partition_is_rejected_not_read(c360_env, outside, caplog):
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D}/part-0.csv", GOOD.encode())
    link = store.root / f"transactions/dt={D}/passwd-link.csv"
    os.symlink(outside / "secret.csv", link)

    with caplog.at_level(logging.WARNING):
        result = ingest(D, c360_env)

    t = result.entities["transactions"]
    assert (t.files, t.landed, t.loaded, t.quarantined) == (1, 2, 2, 0)
    assert t.rejected_files == [(f"transactions/dt={D}/passwd-link.csv", "symbolic link (never followed)")]
    assert "passwd-link.csv: symbolic link (never followed): rejected, not read" in caplog.text
    assert "SECRET" not in _everything_loaded_or_quarantined(c360_env)
    assert reconcile(c360_env, D)["landed"] == 2  # the two real rows: nothing lost, nothing foreign
    # a direct read through the store is refused too, naming the link and what to do
    with pytest.raises(UnsafeKey, match="symbolic link.*Replace the link with the file itself"):
        store.read_bytes(f"transactions/dt={D}/passwd-link.csv")


def test_symlinked_folders_are_never_followed(c360_env, outside, caplog):
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D}/part-0.csv", GOOD.encode())
    os.symlink(outside, store.root / f"transactions/dt={D}/linked-dir")  # a folder link inside a partition
    os.symlink(outside, store.root / "transactions/dt=2026-03-09")  # a whole partition that is a link
    os.symlink(outside, store.root / "customers")  # a whole entity folder that is a link

    with caplog.at_level(logging.WARNING):
        result = ingest(D, c360_env)

    assert result.entities["transactions"].loaded == 2
    assert result.entities["customers"].files == 0
    assert "SECRET" not in _everything_loaded_or_quarantined(c360_env)
    assert "symbolic link to a folder" in caplog.text
    assert [f.key for f in store.list("")] == [f"transactions/dt={D}/part-0.csv"]


def test_subfolders_of_a_partition_are_not_read_and_warned(c360_env, caplog):
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D}/part-0.csv", GOOD.encode())
    store.write_bytes(f"transactions/dt={D}/nested/deeper/part-9.csv", SECRET.encode())

    with caplog.at_level(logging.WARNING):
        result = ingest(D, c360_env)

    t = result.entities["transactions"]
    assert (t.files, t.loaded, t.quarantined) == (1, 2, 0)
    assert "SECRET" not in _everything_loaded_or_quarantined(c360_env)
    assert f"transactions/dt={D}/nested/: sub-folder of a partition, not read" in caplog.text


@pytest.mark.parametrize("key", ["../outside/secret.csv", "/etc/passwd", "transactions/../../outside/secret.csv",
                                 "transactions//x.csv", "./x.csv", "a\\..\\b"])
def test_keys_that_leave_the_root_are_refused(c360_env, outside, key):
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes("transactions/dt=2026-03-10/part-0.csv", GOOD.encode())
    with pytest.raises(UnsafeKey, match="not a relative key"):
        store.read_bytes(key)
    with pytest.raises(UnsafeKey):
        store.write_bytes(key, b"x")
    assert (outside / "secret.csv").read_text() == SECRET


def test_the_landing_root_itself_may_be_a_link(c360_env, tmp_path, monkeypatch):
    """Confinement is below the root: a root configured through a link (data/landing -> /mnt/x) still works."""
    from c360.config import get_settings

    real = tmp_path / "real-landing"
    LocalStorage(real).write_bytes(f"transactions/dt={D}/part-0.csv", GOOD.encode())
    os.symlink(real, tmp_path / "landing-link")
    monkeypatch.setenv("LANDING_URI", str(tmp_path / "landing-link"))
    assert ingest(D, get_settings()).entities["transactions"].loaded == 2


@pytest.mark.s3
def test_s3_objects_outside_the_prefix_are_never_read(c360_env, s3_bucket, moto_s3_server, monkeypatch):
    from c360.config import get_settings

    client = boto3.client("s3", endpoint_url=moto_s3_server)
    client.put_object(Bucket=s3_bucket, Key=f"landing/transactions/dt={D}/a.csv", Body=GOOD.encode())
    # a sibling prefix that shares the string prefix, and an odd object name with '..'
    client.put_object(Bucket=s3_bucket, Key=f"landing-other/transactions/dt={D}/evil.csv", Body=SECRET.encode())
    client.put_object(Bucket=s3_bucket, Key=f"landing/transactions/dt={D}/../evil.csv", Body=SECRET.encode())
    store = S3Storage(f"s3://{s3_bucket}/landing", client=client)
    assert [f.key for f in store.list("")] == [f"transactions/dt={D}/a.csv"]
    with pytest.raises(UnsafeKey):
        store.read_bytes("../landing-other/transactions/dt=2026-03-10/evil.csv")

    monkeypatch.setenv("LANDING_URI", f"s3://{s3_bucket}/landing")
    result = ingest(D, get_settings())
    assert (result.entities["transactions"].landed, result.entities["transactions"].loaded) == (2, 2)
    assert "SECRET" not in _everything_loaded_or_quarantined(get_settings())
