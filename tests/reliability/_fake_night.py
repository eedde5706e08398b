"""A night without Airflow, for tests/reliability/test_nights.py: the real `c360 nightly` supervisor
(c360.pipeline.nightly.run_nights -> dagrun.run_dag) with a fake `airflow` child and a fake metadata DB.

    python _fake_night.py night <date> <mode>   run_nights for <date>, exit with its code
    python _fake_night.py airflow dags test <dag> <date>   the fake child (what airflow_bin() returns runs this)

Modes (C360_FAKE_MODE in the child):
  loop  a task failed; the child then logs "No tasks to run ... unrunnable tasks" every 0.2 s forever (the loop
        `airflow dags test` was seen stuck in) and ignores SIGTERM, as Airflow's task runner does
  tree  a task is running; the child starts a "dbt" grandchild that ignores SIGINT and a "Spark JVM" grandchild in
        its own session that ignores SIGINT and SIGTERM, then waits
Every process writes its PID to $C360_FAKE_PIDS, one a line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path


def _record_pid() -> None:
    with open(os.environ["C360_FAKE_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\n")


def _sleeper(ignore: list[int]) -> None:
    for s in ignore:
        signal.signal(s, signal.SIG_IGN)
    _record_pid()
    while True:
        time.sleep(1)


def fake_airflow() -> None:
    mode = os.environ["C360_FAKE_MODE"]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Airflow's runner only calls on_kill(): the run goes on
    if mode == "loop":
        _record_pid()
        print("DbtRunError: dbt test not_null_int_order_lines_amount_eur failed (1 row)", flush=True)
        while True:
            print(
                "WARNING - No tasks to run. unrunnable tasks: {<TaskInstance: c360_transform.export_features "
                "scheduled__2026-02-02 [None]>}",
                flush=True,
            )
            time.sleep(0.2)
    me = [sys.executable, __file__]
    subprocess.Popen([*me, "sleeper", "INT"])  # dbt: stops on SIGTERM only
    subprocess.Popen([*me, "sleeper", "INT", "TERM"], start_new_session=True)  # a JVM that left the group
    _record_pid()
    while True:
        time.sleep(1)


class FakeMetadataDB:
    """What Airflow's metadata DB says about the run, per mode."""

    def __init__(self, url: str):
        class Engine:
            def dispose(self):
                pass

        self.engine = Engine()

    def read(self, dag_id, day, since):
        from datetime import UTC, datetime

        from c360.pipeline.dagrun import TaskRun

        now = datetime.now(UTC)
        if os.environ["C360_FAKE_MODE"] == "loop":
            return "running", {
                "dbt_build": TaskRun("dbt_build", "failed", 1, now, now),
                "export_features": TaskRun("export_features", None, 0, None, None),
            }
        return "running", {"dbt_build": TaskRun("dbt_build", "running", 1, now, None)}


def night(day: str) -> int:
    from c360.config import get_settings
    from c360.pipeline import airflow_env, dagrun
    from c360.pipeline.nightly import run_nights

    wrapper = Path(os.environ["C360_FAKE_PIDS"]).with_name("airflow")
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{__file__}" airflow "$@"\n')
    wrapper.chmod(0o755)
    airflow_env.airflow_bin = lambda: str(wrapper)
    airflow_env.ensure_airflow = lambda settings=None: None
    dagrun.MetadataDB = FakeMetadataDB
    dagrun.FAILED_SETTLE_SECONDS = float(os.environ.get("C360_FAKE_SETTLE", dagrun.FAILED_SETTLE_SECONDS))
    return run_nights([date.fromisoformat(day)], ["c360_transform"], get_settings())


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "night":
        sys.exit(night(sys.argv[2]))
    elif what == "airflow":
        fake_airflow()
    elif what == "sleeper":
        _sleeper([getattr(signal, f"SIG{s}") for s in sys.argv[2:]])
