"""Run the project's Airflow: an AIRFLOW_HOME inside the project, SQLite metadata, the project's dags/ folder.

`c360 airflow-ui` (c360.cli.airflow_ui) starts the api-server (UI on 127.0.0.1:8080), scheduler, dag-processor and
triggerer with that setup.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from c360.config import PROJECT_ROOT, WAREHOUSE_POOL, Settings, get_settings

log = logging.getLogger(__name__)


def airflow_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for airflow subprocesses: the pipeline settings plus Airflow's own."""
    settings = settings or get_settings()
    home = settings.airflow_home
    env = dict(os.environ)
    env.update(settings.as_env())
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": env.get("AIRFLOW__API__PORT", "8080"),
            # follows the API port, else tasks of an api-server on another port report to nobody
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": env.get(
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                f"http://127.0.0.1:{env.get('AIRFLOW__API__PORT', '8080')}/execution/",
            ),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
            # `airflow standalone` and the api-server's workers start their processes as plain `airflow ...`
            # looked up on PATH; a venv that is not activated (`make airflow`, cron) is not on it.
            "PATH": os.pathsep.join(filter(None, [venv_bin(), env.get("PATH")])),
            "NO_PROXY": "*",
        }
    )
    return env


def venv_bin() -> str:
    """The directory of the running interpreter's scripts (`.venv/bin`), where `airflow` and `mlflow` live.

    Not resolved: `.venv/bin/python` is a symlink to the system interpreter, whose directory has no `airflow`.
    """
    return str(Path(sys.executable).parent)


def airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else (shutil.which("airflow") or "airflow")


def run_airflow(args: list[str], settings: Settings | None = None, check: bool = True, quiet: bool = False):
    env = airflow_env(settings)
    log.debug("airflow %s", " ".join(args))
    kwargs = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True} if quiet else {}
    proc = subprocess.run([airflow_bin(), *args], env=env, **kwargs)
    if check and proc.returncode != 0:
        err = (proc.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {proc.returncode}.\n{err}")
    return proc


def ensure_airflow(settings: Settings | None = None) -> None:
    """Create/upgrade the metadata DB and the warehouse pool (both idempotent)."""
    from importlib.metadata import version

    settings = settings or get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    # `db migrate` + `pools set` take ~10 s; skip them once done for this Airflow version.
    stamp = settings.airflow_home / f".c360-ready-{version('apache-airflow')}"
    if stamp.exists():
        return
    log.info("Preparing Airflow metadata in %s", settings.airflow_home)
    run_airflow(["db", "migrate"], settings, quiet=True)
    run_airflow(
        ["pools", "set", WAREHOUSE_POOL, "1", "Tasks that open the DuckDB warehouse (one process at a time: DuckDB file lock)"],
        settings,
        quiet=True,
    )
    stamp.touch()
