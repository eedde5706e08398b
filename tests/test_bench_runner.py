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
