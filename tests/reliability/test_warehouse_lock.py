"""A held warehouse lock (issue #13, Deliver 11): while another process holds the DuckDB file, a second writer
(ingestion) and an export fail at once with WarehouseLocked naming the holder's program and PID, and nothing is
half-written: raw.* and the published export are exactly as before, and once the lock is released the same
commands load and export everything (landed = loaded + quarantined).

tests/test_ingest.py::test_second_process_holding_the_warehouse_gets_a_clear_error covers the basic case (the
error's wording, one table's row count); this module adds the holder's identity, the time to fail, every raw
table, the next date's files and the export.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from datetime import timedelta

import duckdb
import pytest

from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.marketing.exports import export_segments, read_manifest, verify_export
from c360.pipeline.warehouse import WarehouseLocked
from c360.storage import LocalStorage
from tests.test_ingest import CASES, D, csv, land

pytestmark = pytest.mark.reliability

NEXT = D + timedelta(days=1)


def raw_state(settings) -> dict[str, list[tuple]]:
    """Every row of every raw table (load timestamps included: a rewrite would change them)."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw' ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM raw.{t} ORDER BY ALL").fetchall() for t in tables}


@contextmanager
def lock_held(path):
    """Another process holding the warehouse's write lock inside the block; yields its Popen."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(path)!r})
            print("locked", flush=True)
            time.sleep(120)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def assert_names_holder(message: str, proc: subprocess.Popen, path) -> None:
    assert f"{path} is locked by another process" in message
    # the whole program path (it holds dots: python3.11, .venv, .pyenv) and the PID, so the operator can act
    assert f"PID {proc.pid} ({os.path.realpath(sys.executable)})" in message, message
    assert "C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS" in message


@pytest.fixture
def loaded(c360_env):
    """D ingested; D+1's files already landed (the night the lock will block)."""
    land(c360_env, f"transactions/dt={D}/part-0.csv", csv(*(r for r, _ in CASES)))
    ingest(D, c360_env)
    land(c360_env, f"transactions/dt={NEXT}/part-0.csv",
         csv("n1,1,c1,2026-03-11T10:00:00Z,4,,,EUR,,,", "n2,1,,2026-03-11T10:00:00Z,4,,,EUR,,,"))
    land(c360_env, f"customers/dt={NEXT}/customers.csv", "customer_id,email\nc1,c1@example.com\n")
    return c360_env


def test_second_writer_fails_fast_naming_the_holder_and_writes_nothing(loaded):
    settings = loaded
    before = raw_state(settings)

    with lock_held(settings.warehouse_path) as holder:
        started = time.monotonic()
        with pytest.raises(WarehouseLocked) as err:
            ingest(NEXT, settings)
        assert time.monotonic() - started < 5  # C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS defaults to 0: no hang
        assert_names_holder(str(err.value), holder, settings.warehouse_path)
    assert raw_state(settings) == before  # not one row of D+1, the audit and D's rows untouched

    result = ingest(NEXT, settings)  # the same night, rerun once the lock is gone, loads all of it
    assert result.entities["transactions"].landed == 2 and result.entities["customers"].landed == 1
    report = reconcile(settings, NEXT)
    assert report["landed"] == report["loaded"] + report["quarantined"] == 3 and report["quarantined"] == 1


def test_export_while_locked_fails_naming_the_holder_and_keeps_the_published_export(c360_env):
    from tests.test_exports import D2, SEGMENTS, build_warehouse

    build_warehouse(c360_env.warehouse_path)
    good = export_segments(D2, c360_env, segments=SEGMENTS)
    storage = LocalStorage(c360_env.export_uri)
    date_dir = f"dt={D2.isoformat()}"
    listing = sorted(f.key for f in storage.list(date_dir))

    with lock_held(c360_env.warehouse_path) as holder:
        with pytest.raises(WarehouseLocked) as err:
            export_segments(D2, c360_env, segments=SEGMENTS)
        assert_names_holder(str(err.value), holder, c360_env.warehouse_path)
    assert sorted(f.key for f in storage.list(date_dir)) == listing  # no staging folder, no new run folder
    assert read_manifest(storage, D2) == good and verify_export(D2, c360_env) == good
