"""`make airflow` (`c360 airflow-ui`) comes up on a fresh clone, listens on 127.0.0.1 only, and stops its
components when it is stopped.

Regressions: `airflow standalone`, which the command ran, starts its components as `airflow ...` from PATH; without
an activated venv that lookup failed (FileNotFoundError: 'airflow', repeated) and nothing came up. Its scheduler
and triggerer also started log servers on every interface (8793, 8794).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def _listening(tree: list) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening in the process tree."""
    import psutil

    found = []
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [
                (c.laddr.ip, c.laddr.port)
                for c in p.net_connections("inet")
                if c.status == psutil.CONN_LISTEN
            ]
    return found


def test_airflow_ui_answers_without_venv_on_path_listens_on_loopback_only_and_stops(c360_env, tmp_path):
    import psutil

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"  # what a fresh shell has: no .venv/bin
    env["PYTHONPATH"] = str(ROOT)
    out_path = tmp_path / "airflow-ui.log"
    c360 = Path(sys.executable).with_name("c360")
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            [str(c360), "airflow-ui", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tree = []
    try:
        deadline, health = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None:
            health = _health(port)
            if health and all(health.get(c, {}).get("status") == "healthy" for c in COMPONENTS):
                break
            time.sleep(2)
        logs = "".join(p.read_text() for p in (c360_env.airflow_home / "logs" / "components").glob("*.log"))
        text = out_path.read_text()
        assert health, f"no answer on 127.0.0.1:{port} within 240 s; output:\n{text[-3000:]}\n{logs[-3000:]}"
        for component in COMPONENTS:
            assert health[component]["status"] == "healthy", (component, health)
        assert "No such file or directory: 'airflow'" not in text + logs
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:  # the UI itself
            assert r.status == 200
        time.sleep(3)  # the command polls the health once a second before it says the UI is ready
        assert f"Airflow UI on http://127.0.0.1:{port}" in out_path.read_text()

        # nothing listens beyond 127.0.0.1 (`airflow standalone` started log servers on every interface: 8793
        # for the scheduler's LocalExecutor, 8794 for the triggerer)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert {p.pid for p in tree} > {proc.pid}, "no components started"
        listening = _listening(tree)
        assert port in {p for _, p in listening}, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, (
            f"a component listens beyond 127.0.0.1: {listening}"
        )

        # SIGTERM (as Ctrl-C, SIGINT) to the command alone stops every component and their workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, out_path.read_text()[-3000:]
        _, alive = psutil.wait_procs(tree[1:], timeout=10)
        assert not alive, f"still running after the command stopped: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in tree[1:]:  # also on failure: nothing of this test keeps running
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
