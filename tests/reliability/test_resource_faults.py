"""Disk full and out of memory during ingestion (issue #13, item 8): the real cause is the last line, and the raw
tables are exactly as before the failed run (nothing half-loaded); a rerun after the fault loads the date."""

from __future__ import annotations

import errno
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from c360.cli import main
from c360.ingest import load
from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

D1, D2 = date(2026, 1, 1), date(2026, 1, 2)
HEADER = "customer_id,order_id,ordered_at,amount\n"


class FaultyConnection:
    """A DuckDB connection whose write to raw.ingest_audit (the last write before COMMIT, after the rows went into
    raw.transactions and raw.quarantine) fails with `error`. With `aborts`, the transaction is gone by then, as
    DuckDB leaves it after a failed write on a full disk: a ROLLBACK in the error path then fails too."""

    def __init__(self, con, error: BaseException, aborts: bool):
        self._con, self._error, self._aborts = con, error, aborts

    def executemany(self, sql, *args, **kwargs):
        if "INSERT INTO raw.ingest_audit" in sql:
            if self._aborts:
                self._con.execute("ROLLBACK")
            raise self._error
        return self._con.executemany(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _raw_state(settings) -> dict[str, list]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM raw.{t} ORDER BY ALL").fetchall()
                for t in ("transactions", "quarantine", "ingest_audit")}
    finally:
        con.close()


@pytest.fixture
def landed(c360_env):
    landing = LocalStorage(c360_env.landing_uri)
    landing.write_bytes(f"transactions/dt={D1}/a.csv", (HEADER + "c1,o1,2026-01-01T10:00:00Z,5\n").encode())
    ingest(D1, c360_env)
    landing.write_bytes(f"transactions/dt={D2}/b.csv", (
        HEADER + "c2,o2,2026-01-02T10:00:00Z,7\nc3,o3,2026-01-02T11:00:00Z,9\n,o4,2026-01-02T11:00:00Z,1\n").encode())
    return c360_env


FAULTS = {
    "disk_full": (OSError(errno.ENOSPC, "No space left on device", "/data/warehouse/c360.duckdb.wal"), True,
                  "No space left on device writing /data/warehouse/c360.duckdb.wal"),
    "disk_full_in_duckdb": (duckdb.IOException("IO Error: Could not write file \"c360.duckdb.wal\": No space left "
                                               "on device"), True, "No space left on device (IOException: IO Error"),
    "arrow_out_of_memory": (pa.ArrowMemoryError("malloc of size 1073741824 failed"), False,
                            "Out of memory (ArrowMemoryError: malloc of size 1073741824 failed)"),
    "out_of_memory": (MemoryError(), False, "Out of memory (MemoryError: allocation failed)"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_resource_fault_during_load_names_its_cause_and_loads_nothing(landed, monkeypatch, capfd, fault):
    settings = landed
    error, aborts, expected = FAULTS[fault]
    before = _raw_state(settings)
    real_connect = load.connect
    monkeypatch.setattr(load, "connect", lambda *a, **k: FaultyConnection(real_connect(*a, **k), error, aborts))

    with pytest.raises(type(error)) as raised:  # the real cause, not "cannot rollback - no transaction is active"
        ingest(D2, settings)
    assert raised.value is error
    assert _raw_state(settings) == before  # nothing of D2 half-loaded

    assert main(["ingest", "--date", D2.isoformat()]) == 1
    last = capfd.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"c360 ingest: {expected}")
    assert ("Free disk space under" in last) if fault.startswith("disk") else ("more memory" in last)
    assert _raw_state(settings) == before

    monkeypatch.setattr(load, "connect", real_connect)  # the fault is gone: the rerun loads the date
    result = ingest(D2, settings)
    assert (result.entities["transactions"].loaded, result.entities["transactions"].quarantined) == (2, 1)
    totals = reconcile(settings)
    assert totals["landed"] == totals["loaded"] + totals["quarantined"] == 4
