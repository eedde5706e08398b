"""File identity is the key relative to the landing root (issue #13, item 11): the same landing data under another
path is the same files, so a night on a copied data folder loads nothing twice."""

from __future__ import annotations

import shutil
from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

DAYS = [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)]


def q(settings, sql):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _land_three_days(settings):
    store = LocalStorage(settings.landing_uri)
    for i, day in enumerate(DAYS):
        body = "customer_id,order_id,ordered_at,amount\n" + "".join(
            f"c{j},o{i}-{j},{day}T10:00:00Z,{j + 1}\n" for j in range(5)
        )
        store.write_bytes(f"transactions/dt={day}/part-0.csv", body.encode())


def _state(settings):
    return (
        q(settings, "SELECT _source_file, _source_line, order_id, amount FROM raw.transactions ORDER BY ALL"),
        q(settings, "SELECT count(*) FROM raw.quarantine"),
        q(settings, "SELECT source_file, landed_rows FROM raw.ingest_audit ORDER BY ALL"),
    )


@pytest.mark.parametrize("copy_function", [shutil.copy2, shutil.copy], ids=["times-kept", "times-not-kept"])
def test_a_copy_of_the_landing_zone_at_another_path_loads_nothing_twice(c360_env, tmp_path, monkeypatch, copy_function):
    _land_three_days(c360_env)
    ingest(DAYS[-1], c360_env)
    before = _state(c360_env)
    assert before[2][0][0] == f"transactions/dt={DAYS[0]}/part-0.csv"  # relative, not /tmp/.../landing/...

    moved = tmp_path / "elsewhere" / "landing"
    shutil.copytree(c360_env.landing_uri, moved, copy_function=copy_function)
    monkeypatch.setenv("LANDING_URI", str(moved))
    settings = get_settings()
    result = ingest(DAYS[-1], settings)

    # same rows, no duplicate_row quarantines; a copy that lost modification times reloads (replaces) once
    assert _state(settings) == before
    assert result.entities["transactions"].reasons == {}
    assert reconcile(settings)["landed"] == 15


def test_rows_loaded_under_absolute_paths_are_migrated_once(c360_env, tmp_path, monkeypatch):
    """A warehouse from before relative identity: its absolute paths are rewritten, so the next night (even at
    another landing path) recognises every file as loaded."""
    _land_three_days(c360_env)
    ingest(DAYS[-1], c360_env)
    root = LocalStorage(c360_env.landing_uri).uri
    con = duckdb.connect(str(c360_env.warehouse_path))
    for table, col in [("raw.transactions", "_source_file"), ("raw.quarantine", "source_file"),
                       ("raw.ingest_audit", "source_file")]:
        con.execute(f"UPDATE {table} SET {col} = $1 || '/' || {col}", [root])  # what the old code stored
    con.close()
    assert q(c360_env, "SELECT min(_source_file) FROM raw.transactions")[0][0].startswith(root)

    moved = tmp_path / "moved"
    shutil.copytree(c360_env.landing_uri, moved)
    monkeypatch.setenv("LANDING_URI", str(moved))
    settings = get_settings()
    nxt = date(2026, 3, 11)
    LocalStorage(moved).write_bytes(f"transactions/dt={nxt}/part-0.csv",
                                    f"customer_id,order_id,ordered_at,amount\nc1,n1,{nxt}T10:00:00Z,1\n".encode())
    result = ingest(nxt, settings)
    t = result.entities["transactions"]
    assert (t.files, t.loaded, t.quarantined) == (1, 1, 0)  # only the new night's file was read
    assert q(settings, "SELECT count(*) FROM raw.transactions WHERE _source_file LIKE '/%'") == [(0,)]
    assert q(settings, "SELECT count(*), count(DISTINCT order_id) FROM raw.transactions") == [(16, 16)]
    assert reconcile(settings)["files"] == 4


def test_a_deleted_or_replaced_file_takes_its_rows_with_it(c360_env):
    """Correcting the landing zone repairs raw: a bad file replaced by a fixed one under another name, and a file
    deleted, lose their rows on the next run; a partition removed as a whole (retention) keeps them."""
    _land_three_days(c360_env)
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={DAYS[1]}/bad.csv",
                      f"customer_id,order_id,ordered_at,amount\nc1,bad-1,{DAYS[1]}T10:00:00Z,1\n".encode())
    ingest(DAYS[-1], c360_env)
    assert q(c360_env, "SELECT count(*) FROM raw.transactions WHERE order_id = 'bad-1'") == [(1,)]

    store.delete_prefix(f"transactions/dt={DAYS[1]}/bad.csv")  # the fix: the bad file removed
    store.write_bytes(f"transactions/dt={DAYS[1]}/fixed.csv",
                      f"customer_id,order_id,ordered_at,amount\nc1,fixed-1,{DAYS[1]}T10:00:00Z,1\n".encode())
    store.delete_prefix(f"transactions/dt={DAYS[0]}")  # retention: the oldest partition gone as a whole
    result = ingest(DAYS[-1], c360_env)

    assert result.entities["transactions"].removed_files == [f"transactions/dt={DAYS[1]}/bad.csv"]
    assert q(c360_env, "SELECT count(*) FROM raw.transactions WHERE order_id = 'bad-1'") == [(0,)]
    assert q(c360_env, "SELECT count(*) FROM raw.transactions WHERE order_id = 'fixed-1'") == [(1,)]
    assert q(c360_env, f"SELECT count(*) FROM raw.transactions WHERE _dt = '{DAYS[0]}'") == [(5,)]  # kept
    assert q(c360_env, "SELECT count(*) FROM raw.ingest_audit WHERE source_file LIKE '%bad.csv'") == [(0,)]
    assert reconcile(c360_env) == {"files": 4, "landed": 16, "loaded": 16, "quarantined": 0}
