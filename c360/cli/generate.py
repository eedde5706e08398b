"""`c360 generate`: command-line front end of c360dev.generate.generate()."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from c360dev.generate.core import DEFAULT_START, generate
from c360dev.generate.dirt import DirtConfig
from c360dev.generate.model import PROFILES, profile_params

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=20_000, help="number of customers (default 20000)")
    parser.add_argument("--days", type=int, default=400, help="number of daily dt partitions (default 400)")
    parser.add_argument(
        "--seed", type=int, default=42, help="random seed; same arguments give identical files"
    )
    parser.add_argument(
        "--start",
        "--start-date",
        dest="start",
        default=DEFAULT_START,
        help=f"first dt, YYYY-MM-DD, any date from 1970 on (default {DEFAULT_START})",
    )
    parser.add_argument(
        "--profile",
        default="default",
        choices=sorted(PROFILES),
        help="model parameter set: default (the demo shop) or retail (real-retail stylised facts); "
        "see docs/generator.md",
    )
    parser.add_argument(
        "--out", default=None, help="landing URI: folder or s3://bucket/prefix (default LANDING_URI)"
    )
    parser.add_argument(
        "--truth-dir", default=None, help="ground-truth folder (default $C360_DATA_DIR/ground_truth)"
    )
    parser.add_argument("--dirt-scale", type=float, default=1.0, help="multiply every dirt rate (default 1)")
    parser.add_argument("--no-dirt", action="store_true", help="inject no dirt at all")
    parser.add_argument("--no-tracking", action="store_true", help="do not generate tracking events")
    parser.add_argument(
        "--only-transactions",
        "--transactions-only",
        dest="only_transactions",
        action="store_true",
        help="write only transactions with customer_id, order_id, ordered_at, amount",
    )
    parser.add_argument(
        "--duplicate-accounts", type=float, default=0.0, metavar="RATE",
        help="share of customers who open a second account with the same email (case/blanks differ); truth in "
        "the ground-truth folder's identity_truth.csv (default 0: none, output unchanged)",
    )
    parser.add_argument(
        "--guest-orders", type=float, default=0.0, metavar="RATE",
        help="share of customers who also check out as a guest (customers row with email, no signup) (default 0)",
    )
    parser.add_argument(
        "--tracking-format", default=None, metavar="FORMAT",
        help="how tracking lands: canonical (own format, tracking/dt=D/), snowplow (enriched TSV), snowplow_json, "
        "segment, rudderstack, ga4 (tracking/<vendor>/dt=D/), or a migration OLD>NEW@YYYY-MM-DD[+OVERLAP_DAYS] "
        "(both tags on the overlap days; default 3). Default C360_GENERATE_TRACKING_FORMAT (canonical). "
        "docs/tracking_vendors.md",
    )
    parser.add_argument("--log-every", type=int, default=None, help="log progress every N days")


def run(args: argparse.Namespace) -> int:
    from c360.config import get_settings

    settings = get_settings()
    try:
        import numpy as np

        start_day = np.datetime64(args.start, "D")
    except ValueError:
        log.error("--start %r is not a date like 2025-10-01", args.start)
        return 2
    if start_day < np.datetime64("1970-01-01"):
        # Times are seconds since 1970 throughout the generator (and the pipeline quarantines older dates).
        log.error("--start %s is before 1970-01-01; choose a date from 1970 on", args.start)
        return 2
    if args.customers < 1 or args.days < 1:
        log.error("--customers and --days must be at least 1")
        return 2
    dirt = DirtConfig.none() if args.no_dirt else DirtConfig(scale=args.dirt_scale)
    from c360dev.generate.vendors import parse_option

    tracking_format = parse_option(args.tracking_format, settings.generate_tracking_format)
    summary = generate(
        out=args.out or settings.landing_uri,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        truth_dir=Path(args.truth_dir) if args.truth_dir else None,
        dirt=dirt,
        tracking=not args.no_tracking,
        only_transactions=args.only_transactions,
        log_every=args.log_every,
        params=profile_params(args.profile),
        tracking_format=tracking_format,
    )
    print(summary.describe())
    if args.duplicate_accounts or args.guest_orders:
        from c360dev.generate.identity import add_identity_cases

        cases = add_identity_cases(
            args.out or settings.landing_uri, summary.truth_dir, seed=args.seed, start=args.start,
            days=args.days, duplicate_rate=args.duplicate_accounts, guest_rate=args.guest_orders,
        )
        print(f"  identity cases: {cases.duplicate_accounts} duplicate accounts, {cases.guest_orders} guest "
              f"orders; truth {cases.truth_path}")
    return 0
