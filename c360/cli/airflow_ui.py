"""`c360 airflow-ui` (`make airflow`): the local Airflow (API server + UI, scheduler, dag-processor, triggerer) with
the project's setup (c360.pipeline.airflow_env), every socket on 127.0.0.1.

Not `airflow standalone`: its scheduler and triggerer also start their log servers (8793, 8794), which bind every
interface and have no host setting. Here each component is started directly, the api-server with --host 127.0.0.1
and the scheduler and triggerer with --skip-serve-logs (the api-server reads the task logs from the shared local
log folder). Ctrl-C, SIGTERM or SIGHUP stop them all; so does one of them exiting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from c360.config import get_settings
from c360.pipeline.airflow_env import airflow_bin, airflow_env, ensure_airflow

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
STOP_SECONDS = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", default="8080")


def components(port: str) -> dict[str, list[str]]:
    """Component name -> airflow arguments. Nothing listens except the api-server, on 127.0.0.1."""
    return {
        "api-server": ["api-server", "--host", "127.0.0.1", "--port", port],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }


def start(env: dict[str, str], port: str, log_dir: Path, procs: dict[str, subprocess.Popen]) -> None:
    """Start every component into `procs` (filled as they start: a stop signal may come in between), each in a
    session of its own, so that stop() ends its workers and task processes with it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for name, args in components(port).items():
        with (log_dir / f"{name}.log").open("ab") as out:
            procs[name] = subprocess.Popen(
                [airflow_bin(), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def stop(procs: dict[str, subprocess.Popen], timeout: float = STOP_SECONDS) -> None:
    """SIGTERM each component's process group, SIGKILL what is left after `timeout` seconds."""
    for proc in procs.values():
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs.values():  # also the group's leftovers (task runners) when the leader did exit
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as r:
            health = json.load(r)
    except (OSError, ValueError):
        return False
    return all(health.get(c, {}).get("status") == "healthy" for c in HEALTH_COMPONENTS)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    ensure_airflow(settings)
    os.environ["AIRFLOW__API__PORT"] = args.port
    env = airflow_env(settings)
    # what `airflow standalone` forced: the LocalExecutor and the simple auth manager (generated admin password)
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    env["AIRFLOW__CORE__AUTH_MANAGER"] = SIMPLE_AUTH_MANAGER
    log_dir = settings.airflow_home / "logs" / "components"
    passwords = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    previous = {
        sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        start(env, args.port, log_dir, procs)
        print(f"Starting Airflow ({', '.join(procs)}); logs in {log_dir}. Ctrl-C to stop.", flush=True)
        ready = False
        while True:
            exited = {name: p.returncode for name, p in procs.items() if p.poll() is not None}
            if exited:
                for name, code in exited.items():
                    tail = (log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                    print(
                        f"airflow {name} exited with code {code}; last lines of {log_dir / f'{name}.log'}:",
                        *tail,
                        sep="\n",
                        flush=True,
                    )
                return 1
            if not ready and healthy(args.port):
                ready = True
                print(
                    f"Airflow UI on http://127.0.0.1:{args.port} (user/password: see {passwords})", flush=True
                )
            time.sleep(1)
    except _Stop as stopped:
        print(f"{stopped}: stopping Airflow", flush=True)
        return 0
    finally:
        # a second Ctrl-C must not leave the components running half-stopped
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
