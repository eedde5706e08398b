"""`c360 airflow-ui`: start `airflow standalone` (scheduler + API server + UI on 127.0.0.1:8080) with the project's
Airflow setup (c360.pipeline.airflow_env)."""

from __future__ import annotations

import argparse
import os

from c360.config import get_settings
from c360.pipeline.airflow_env import ensure_airflow, run_airflow


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", default="8080")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    ensure_airflow(settings)
    os.environ["AIRFLOW__API__PORT"] = args.port
    print(f"Airflow UI on http://127.0.0.1:{args.port} (user/password: see {settings.airflow_home}/"
          "simple_auth_manager_passwords.json.generated). Ctrl-C to stop.")
    return run_airflow(["standalone"], settings, check=False).returncode
