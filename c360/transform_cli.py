"""`c360 transform --date D`: dbt build for a date and the Parquet export of its feature snapshot (as the DAG does)."""

from __future__ import annotations

import argparse
import logging
from datetime import date

from c360.config import get_settings

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="data date (default: the latest loaded)")
    p.add_argument("--no-export", action="store_true", help="skip the Parquet export of the snapshot")


def run(args: argparse.Namespace) -> int:
    from c360 import transform

    settings = get_settings()
    result = transform.build(args.date, settings)
    print(f"dbt build for {args.date or 'the latest date'}: {result.summary()} in {result.elapsed_seconds:.1f} s")
    if not args.no_export:
        exported = transform.export_feature_parquet(args.date, settings)
        for table, parts in exported.written.items():
            for d, (path, rows) in sorted(parts.items()):
                print(f"  {table} as_of_date={d}: {rows:,} rows -> {path}")
    return 0
