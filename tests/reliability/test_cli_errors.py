"""`c360` commands end on a user-facing error (a bad landed file, too much quarantine, a held lock, ...) with the
error's own message, which names the file or figures and what to do, and a non-zero exit: never a Python traceback
(issue #13, items 3-5). A bug (any other exception) keeps its traceback."""

from __future__ import annotations

import bz2
import importlib
import os
import subprocess
import sys
from datetime import date

import pytest

from c360 import cli
from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

D = date(2026, 3, 10)
ORDERS = b"customer_id,order_id,ordered_at,amount\nc1,o1,2026-03-10T10:00:00Z,5\n"


def test_ingest_of_a_date_with_an_unreadable_file_ends_with_one_message_naming_it(c360_env):
    store = LocalStorage(c360_env.landing_uri)
    store.write_bytes(f"transactions/dt={D}/good.csv", ORDERS)
    store.write_bytes(f"transactions/dt={D}/orders.csv.bz2", bz2.compress(ORDERS))
    proc = subprocess.run(
        [sys.executable, "-m", "c360.cli", "ingest", "--date", D.isoformat()],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("c360 ingest: UnreadableFile: transactions: cannot read 1 file(s)"), last
    assert store.uri_of(f"transactions/dt={D}/orders.csv.bz2") in last and "compressed as .bz2" in last
    assert "re-land it as .csv, .csv.gz or .parquet" in last and "Nothing of transactions was loaded" in last


def _raise(exc: BaseException):
    def run(args):
        raise exc

    return run


def _errors() -> dict[str, BaseException]:
    from c360.ingest.landing import LandingPartitionMissing
    from c360.ingest.load import QuarantineRateExceeded
    from c360.ingest.readers import UnreadableFile
    from c360.marketing.exports.export import ExportHeld
    from c360.pipeline.warehouse import WarehouseLocked

    return {
        "UnreadableFile": UnreadableFile(
            "transactions: cannot read file:///l/transactions/dt=D/x.csv.zip (...)"
        ),
        "QuarantineRateExceeded": QuarantineRateExceeded(
            "transactions dt=D: 120 of 120 rows quarantined (100.0%)"
        ),
        "WarehouseLocked": WarehouseLocked(
            "warehouse.duckdb is locked by another process (PID 42 /usr/bin/x)"
        ),
        "LandingPartitionMissing": LandingPartitionMissing(
            "No transactions files under file:///l/transactions/dt=D/"
        ),
        "ExportHeld": ExportHeld(
            "Exports for D are held: landed volume is out of range (transactions 10 rows)"
        ),
    }


@pytest.mark.parametrize(
    "name",
    ["UnreadableFile", "QuarantineRateExceeded", "WarehouseLocked", "LandingPartitionMissing", "ExportHeld"],
)
def test_a_user_facing_error_is_one_message_and_exit_1(c360_env, monkeypatch, capsys, name):
    exc = _errors()[name]
    monkeypatch.setattr(importlib.import_module("c360.cli.ingest"), "run", _raise(exc))
    assert cli.main(["ingest", "--date", D.isoformat()]) == 1
    err = capsys.readouterr().err
    assert err == f"c360 ingest: {name}: {exc}\n"


def test_every_listed_error_class_exists():
    """USER_ERRORS names classes by module and name (so that a check imports nothing): a rename must not silently
    bring tracebacks back."""
    for module, name in sorted(cli.USER_ERRORS):
        cls = getattr(importlib.import_module(module), name, None)
        assert isinstance(cls, type) and issubclass(cls, Exception), f"{module}.{name}"


def test_a_bug_keeps_its_traceback(c360_env, monkeypatch):
    monkeypatch.setattr(importlib.import_module("c360.cli.ingest"), "run", _raise(KeyError("bug")))
    with pytest.raises(KeyError):
        cli.main(["ingest", "--date", D.isoformat()])
