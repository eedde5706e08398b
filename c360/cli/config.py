"""`c360 config`: print every resolved setting, its value and the environment variable that overrides it."""

from __future__ import annotations

import argparse
import json

from c360.config import ENV_VARS, get_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print {setting: {value, env}} as JSON; `--env` prints VARIABLE=value lines instead")
    p.add_argument("--env", action="store_true",
                   help="print the settings as the VARIABLE=value lines children (Airflow, dbt, Spark) receive")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()  # a bad variable raises here, naming it
    described = settings.describe()
    if getattr(args, "env", False):
        for key, value in settings.as_env().items():
            print(f"{key}={value}")
    elif getattr(args, "json", False):
        print(json.dumps({k: {"value": v, "env": ENV_VARS[k]} for k, v in described.items()}, indent=2))
    else:
        for key, value in described.items():
            print(f"{key:<32} {ENV_VARS[key]:<38} {value}")
    return 0
