"""`c360 nightly`: the nightly job for a date (or a backfill range), run through real Airflow by
c360.pipeline.nightly.run_nights.

On a fresh machine the landing zone is empty: a demo shop (20k customers over 400 days) is generated first by the
dev-only generator (c360dev.generate). That step lives here, on the command line, so the pipeline never imports
development tools.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import date, timedelta

from c360.config import get_settings
from c360.pipeline.nightly import NIGHTLY_DAGS
from c360.storage import open_storage

log = logging.getLogger(__name__)

DEMO = {"customers": 20_000, "days": 400, "seed": 42}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="logical date (default: the latest landed transactions dt)")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, help="backfill: first date (with --to)")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, help="backfill: last date (with --from)")
    p.add_argument("--customers", type=int, default=DEMO["customers"], help="demo size if data must be generated")
    p.add_argument("--days", type=int, default=DEMO["days"], help="demo history if data must be generated")
    p.add_argument("--seed", type=int, default=DEMO["seed"])
    p.add_argument("--tracking-format", default=None, metavar="FORMAT",
                   help="if demo data must be generated, land its tracking as canonical (default: "
                   "C360_GENERATE_TRACKING_FORMAT), a vendor's or a migration OLD>NEW@YYYY-MM-DD "
                   "(docs/tracking_vendors.md)")
    p.add_argument("--dags", nargs="+", default=NIGHTLY_DAGS, help="DAGs to run, in order")
    p.add_argument("--accept-volume", action="store_true",
                   help="do not hold this run's night(s) for volume (C360_VOLUME_OVERRIDE_DATE for each date run)")
    p.add_argument("-v", "--stream-logs", dest="stream_logs", action="store_true",
                   help="stream the full Airflow/dbt/Spark output (it always goes to data/logs/nightly/D/<dag>.log)")


def run(args: argparse.Namespace) -> int:
    from c360.ingest.landing import latest_partition
    from c360.pipeline.nightly import run_nights

    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    started = time.monotonic()
    if latest_partition(storage) is None:
        from c360dev.generate import generate
        from c360dev.generate.vendors import parse_option

        tracking_format = parse_option(args.tracking_format, settings.generate_tracking_format)
        needed = tracking_format.tracking_sources()
        if needed and settings.tracking_sources != needed:
            # the cut-over is dbt's (Settings), read by every later night: it must be set, not guessed here
            raise SystemExit(f"A demo landed as the migration {tracking_format} needs its cut-over in dbt: run with "
                             f'C360_TRACKING_SOURCES="{needed}" (now {settings.tracking_sources!r}); otherwise the '
                             "overlap days count every visit twice. docs/tracking_vendors.md")

        log.info("Landing zone %s is empty: generating a demo shop (%s customers x %s days, seed %s)",
                 storage.uri, f"{args.customers:,}", args.days, args.seed)
        generate(out=storage, customers=args.customers, days=args.days, seed=args.seed,
                 truth_dir=settings.data_dir / "ground_truth", tracking_format=tracking_format)
    if bool(args.date_from) != bool(args.date_to):
        raise SystemExit("A backfill needs both --from and --to (make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD)")
    if args.date_from:
        if args.date_from > args.date_to:
            raise SystemExit(f"--from {args.date_from} is after --to {args.date_to}")
        days = [args.date_from + timedelta(days=i) for i in range((args.date_to - args.date_from).days + 1)]
    else:
        days = [args.date or latest_partition(storage)]
    stream = bool(args.stream_logs or getattr(args, "verbose", False))
    code = run_nights(days, args.dags, settings, accept_volume=args.accept_volume, stream=stream)
    if code == 0 and len(days) > 1:
        print(f"\nBackfill {days[0]} .. {days[-1]}: {len(days)} nights in {time.monotonic() - started:.0f} s")
    return code
