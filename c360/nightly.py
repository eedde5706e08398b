"""`c360 nightly`: the nightly job for a date, run through real Airflow (`airflow dags test`, SQLite metadata).

On a fresh machine the landing zone is empty: a demo shop (20k customers over 400 days) is generated first.
The DAGs run in the order their Assets chain them; `airflow dags test` runs one DAG run in-process, so the
chain is walked here in that order.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from datetime import date, timedelta

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)

# The nightly chain, upstream first (each DAG is scheduled on the previous one's Assets in production).
NIGHTLY_DAGS = ["c360_ingest", "c360_transform", "c360_score"]

DEMO = {"customers": 20_000, "days": 400, "seed": 42}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="logical date (default: the latest landed transactions dt)")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, help="backfill: first date (with --to)")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, help="backfill: last date (with --from)")
    p.add_argument("--customers", type=int, default=DEMO["customers"], help="demo size if data must be generated")
    p.add_argument("--days", type=int, default=DEMO["days"], help="demo history if data must be generated")
    p.add_argument("--seed", type=int, default=DEMO["seed"])
    p.add_argument("--dags", nargs="+", default=NIGHTLY_DAGS, help="DAGs to run, in order")
    p.add_argument("--accept-volume", action="store_true",
                   help="do not hold this run's night(s) for volume (C360_VOLUME_OVERRIDE_DATE for each date run)")


def run(args: argparse.Namespace) -> int:
    from c360.airflow_env import ensure_airflow, run_airflow
    from c360.ingest.landing import latest_partition
    from c360.summary import print_nightly_summary

    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    started = time.monotonic()
    if latest_partition(storage) is None:
        from c360.generate import generate

        log.info("Landing zone %s is empty: generating a demo shop (%s customers x %s days, seed %s)",
                 storage.uri, f"{args.customers:,}", args.days, args.seed)
        generate(out=storage, customers=args.customers, days=args.days, seed=args.seed,
                 truth_dir=settings.data_dir / "ground_truth")
    if bool(args.date_from) != bool(args.date_to):
        raise SystemExit("A backfill needs both --from and --to (make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD)")
    if args.date_from:
        if args.date_from > args.date_to:
            raise SystemExit(f"--from {args.date_from} is after --to {args.date_to}")
        days = [args.date_from + timedelta(days=i) for i in range((args.date_to - args.date_from).days + 1)]
    else:
        days = [args.date or latest_partition(storage)]
    ensure_airflow(settings)
    for day in days:  # in date order: each night builds on the previous one's state
        night_started = time.monotonic()
        timings = {}
        # the override reaches only the Airflow children of this night, never the caller's environment
        night = replace(settings, volume_override_date=day.isoformat()) if args.accept_volume else settings
        for dag_id in args.dags:
            t0 = time.monotonic()
            log.info("Running %s for %s through Airflow", dag_id, day)
            run_airflow(["dags", "test", dag_id, day.isoformat()], night)
            timings[dag_id] = time.monotonic() - t0
        print_nightly_summary(settings, day, timings, time.monotonic() - night_started)
    if len(days) > 1:
        print(f"\nBackfill {days[0]} .. {days[-1]}: {len(days)} nights in {time.monotonic() - started:.0f} s")
    return 0
