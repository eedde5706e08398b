"""`c360 config`: print the resolved settings (defaults overridden by environment variables)."""

from __future__ import annotations

import argparse

from c360.config import get_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for key, value in get_settings().describe().items():
        print(f"{key:<32} {value}")
    return 0
