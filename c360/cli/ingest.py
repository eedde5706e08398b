"""`c360 ingest --date D`: load the landing zone's files for D into raw.*, outside Airflow (same code the DAG runs)."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date

from c360.config import get_settings
from c360.ingest.landing import latest_partition, wait_for_partition
from c360.storage import open_storage

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="logical date (default: the latest landed transactions dt)")
    p.add_argument("--entity", action="append", help="only this entity (repeatable)")
    p.add_argument("--wait", action="store_true", help="wait for the partition (C360_LANDING_WAIT_SECONDS)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from c360.ingest.load import ingest
    from c360.pipeline.summary import print_ingest_summary

    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    day = args.date or latest_partition(storage)
    if day is None:
        log.error("The landing zone %s has no transactions partitions. Run `c360 generate` or land files "
                  "as described in docs/landing_contract.md.", storage.uri)
        return 1
    if args.wait:
        wait_for_partition(storage, "transactions", day, settings.landing_wait_seconds, settings.landing_poke_seconds)
    result = ingest(day, settings, args.entity)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_ingest_summary(result.as_dict())
    return 0
