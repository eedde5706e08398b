"""`c360 bench --size S|M|L`: benchmark the nightly run at a size (the dev-only harness: c360dev.bench.nightly,
docs/benchmarks.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from c360dev.bench.nightly import SIZES, run_benchmark


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", choices=sorted(SIZES), default="S")
    p.add_argument("--repeat", type=int, default=3, help="runs per nightly stage (median reported)")
    p.add_argument("--work-dir", type=Path, help="where data goes (default: bench/work/<size>, deleted first)")
    p.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    p.add_argument("--skip-history-ratio", action="store_true", help="skip the 30-days-of-history comparison")
    p.add_argument("--skip-models", action="store_true", help="skip training, scoring, segments and exports")
    p.add_argument("--skip-pandas", action="store_true", help="skip the pandas reference (always skipped at L)")
    p.add_argument("--skip-spark-warehouse", action="store_true",
                   help="skip the same history and night on the Spark SQL warehouse (always skipped at L)")
    p.add_argument("--tracking-format", default="canonical", metavar="FORMAT",
                   help="land the shop's tracking as canonical (default), snowplow, snowplow_json, segment, "
                   "rudderstack, ga4 or a migration OLD>NEW@YYYY-MM-DD[+DAYS], so the run includes the vendor "
                   "adapters (docs/tracking_vendors.md)")


def run(args: argparse.Namespace) -> int:
    from c360dev.generate.vendors import parse_option

    tracking_format = str(parse_option(args.tracking_format))
    return run_benchmark(args.size, repeat=args.repeat, work_dir=args.work_dir, keep=args.keep,
                         skip_history_ratio=args.skip_history_ratio, skip_models=args.skip_models,
                         skip_pandas=args.skip_pandas, skip_spark_warehouse=args.skip_spark_warehouse,
                         tracking_format=tracking_format)
