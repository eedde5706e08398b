"""`make airflow` (`c360 airflow-ui` -> `airflow standalone`) comes up on a fresh clone.

Regression: standalone starts its scheduler, dag-processor, triggerer and api-server as `airflow ...` from PATH;
without an activated venv that lookup failed (FileNotFoundError: 'airflow', repeated) and nothing came up.
"""

from __future__ import annotations

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


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
            return json.load(r)
    except OSError:
        return None


def test_airflow_ui_answers_without_venv_on_path(c360_env, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"  # what a fresh shell has: no .venv/bin
    env["PYTHONPATH"] = str(ROOT)
    log = (tmp_path / "standalone.log").open("w")
    c360 = Path(sys.executable).with_name("c360")
    proc = subprocess.Popen([str(c360), "airflow-ui", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, health = time.monotonic() + 240, None
        while time.monotonic() < deadline and proc.poll() is None:
            health = _health(port)
            if health and all(health.get(c, {}).get("status") == "healthy"
                              for c in ("metadatabase", "scheduler", "dag_processor")):
                break
            time.sleep(2)
        text = (tmp_path / "standalone.log").read_text()
        assert health, f"no answer on 127.0.0.1:{port} within 240 s; log tail:\n{text[-3000:]}"
        for component in ("metadatabase", "scheduler", "dag_processor"):
            assert health[component]["status"] == "healthy", (component, health)
        assert "No such file or directory: 'airflow'" not in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:  # the UI itself
            assert r.status == 200
    finally:
        # standalone's children are in our new session: stop the whole group, also on failure
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
