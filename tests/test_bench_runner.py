"""The benchmark harness measures what it claims: wall time and the peak memory of the whole process tree."""

from __future__ import annotations

import sys

from c360dev.bench.runner import run_stage

CHILD = "import time; b = bytearray(300 * 2**20); time.sleep(1.0)"


def test_peak_memory_includes_child_processes_and_time_is_measured():
    # the parent allocates nothing; a grandchild holds 300 MB for a second
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}], check=True)"
    result = run_stage("probe", [sys.executable, "-c", parent], repeat=2)
    assert result.returncode == 0
    assert len(result.seconds) == 2 and all(s >= 1.0 for s in result.seconds)
    assert result.peak_rss_mb >= 300


def test_failed_stage_stops_repeating_and_reports_exit_code():
    result = run_stage("boom", [sys.executable, "-c", "raise SystemExit(3)"], repeat=3)
    assert result.returncode == 3 and len(result.seconds) == 1


def test_long_stage_runs_once_and_says_so_short_stage_repeats():
    sleep = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    long = run_stage("long", sleep, repeat=3, long_stage_seconds=0.2)
    assert len(long.seconds) == 1 and "ran once of 3" in long.note
    short = run_stage("short", sleep, repeat=3, long_stage_seconds=5.0)
    assert len(short.seconds) == 3 and short.note == ""


def test_history_ratio_counts_the_customers_of_the_nights_snapshot(tmp_path):
    """The bench reports the snapshot's population beside the history ratio: the customers of that date only, and
    nothing (not a crash) for a warehouse without a feature store."""
    from datetime import date

    import duckdb

    from c360dev.bench.nightly import _snapshot_customers

    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE SCHEMA feature_store")
        con.execute("CREATE TABLE feature_store.customer_features AS SELECT * FROM (VALUES "
                    "('a', DATE '2025-01-30'), ('a', DATE '2025-01-31'), ('b', DATE '2025-01-31')) t(customer_id, as_of_date)")
    assert _snapshot_customers(warehouse, date(2025, 1, 31)) == 2
    assert _snapshot_customers(warehouse, date(2025, 1, 30)) == 1
    assert _snapshot_customers(tmp_path / "none.duckdb", date(2025, 1, 31)) is None
