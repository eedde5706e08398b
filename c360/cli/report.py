"""`c360 report --date D`: write the run report for a date (reports/D.html + D.json) and print where it is."""

from __future__ import annotations

import argparse
from datetime import date

from c360.config import get_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, required=True, help="the night's logical date")


def run(args: argparse.Namespace) -> int:
    from c360.pipeline.report import build_report

    paths = build_report(args.date, get_settings())
    print(f"Run report for {args.date}: {paths.html}")
    print(f"  facts as JSON: {paths.json}")
    print(f"  {paths.headline}")
    for w in paths.warnings:
        print(f"  warning: {w}")
    return 0
