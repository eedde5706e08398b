"""`c360 load-history`: spread one big history file into daily landing partitions (c360.ingest.history)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from c360.config import get_settings
from c360.ingest.contract import ENTITIES
from c360.ingest.history import spread_history
from c360.storage import open_storage


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="CSV, Parquet or JSON-lines file with history")
    p.add_argument("--entity", required=True, choices=sorted(ENTITIES), help="what the file holds")
    p.add_argument("--name", help="file name stem to use in the partitions (default: the file's)")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    try:
        counts = spread_history(args.file, args.entity, storage, args.name)
    except ValueError as exc:  # the file's problem and what to do: one line, not a traceback
        print(f"c360 load-history: {exc}", file=sys.stderr)
        return 1
    last = max(counts)
    print(f"Spread {sum(counts.values()):,} rows into {len(counts)} daily partitions under {storage.uri_of(args.entity)}.")
    print(f"Next: make nightly DATE={last.isoformat()}  (loads all of it once; later nights load only their own day)")
    return 0
