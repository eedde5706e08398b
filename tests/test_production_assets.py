"""Under a real scheduler, each landed date gets its own downstream run, in date order.

Before: downstream DAGs were scheduled on plain Assets; Airflow makes ONE run of all events queued since the
previous run, so dates ingested while a transform run was busy collapsed into one run that took the latest date.
The probe DAGs (tests/production_dags) use the pipeline's own schedule helper and date functions.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DATES = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]


def test_queued_dates_get_one_downstream_run_each_in_order(c360_env, tmp_path):
    from c360.cli.airflow_ui import start, stop
    from c360.pipeline.airflow_env import airflow_bin, airflow_env, ensure_airflow

    port = free_port()
    probe_log = tmp_path / "probe.log"
    env = airflow_env(c360_env)
    env.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "production_dags"),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "C360_PROBE_LOG": str(probe_log),
        }
    )

    def cli(*args: str) -> str:
        proc = subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"airflow {' '.join(args)}: {proc.stderr[-2000:]}"
        return proc.stdout

    # the components of `make airflow` (not `airflow standalone`: its log servers listen on every interface)
    ensure_airflow(c360_env)
    logs, procs = tmp_path / "components", {}
    try:
        start(env, str(port), logs, procs)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # both DAGs parsed
            listed = subprocess.run(
                [airflow_bin(), "dags", "list", "-o", "json"], env=env, capture_output=True, text=True
            ).stdout
            if "probe_transform" in listed and "probe_ingest" in listed:
                break
            time.sleep(3)
        else:
            pytest.fail(
                "probe DAGs not parsed within 180 s: " + (logs / "dag-processor.log").read_text()[-3000:]
            )
        cli("dags", "unpause", "probe_transform")
        cli("dags", "unpause", "probe_ingest")
        # all dates land back to back: the later ones arrive while the first transform run is busy
        for day in DATES:
            cli("dags", "trigger", "probe_ingest", "--conf", json.dumps({"run_date": day}))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = probe_log.read_text().split() if probe_log.exists() else []
            if len(done) >= len(DATES):
                break
            time.sleep(2)
        time.sleep(6)  # a collapsed or duplicate run would show up here
        done = probe_log.read_text().split() if probe_log.exists() else []
        assert done == DATES, f"downstream runs resolved dates {done}, expected one per landed date in order"
        listed = cli("dags", "list-runs", "probe_transform", "-o", "json")  # may be preceded by log lines
        runs = next(json.loads(line) for line in listed.splitlines() if line.startswith("[{"))
        assert len(runs) == len(DATES), runs
        assert all(r["state"] == "success" for r in runs), runs
    finally:
        stop(procs)
