"""`c360 segments`: the definition and warehouse actions of c360.marketing.segments plus `export` (docs/exports.md).

Composed here, above both modules, so c360.marketing.segments never imports the exports (which import segments).
"""

from __future__ import annotations

import argparse
import logging
from datetime import date

from c360.marketing import segments as segments_mod

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = segments_mod.add_arguments(p)
    exp = sub.add_parser("export", help="write the exports for a date (docs/exports.md)")
    exp.add_argument("--date", type=date.fromisoformat, help="as_of_date (default: the latest in the warehouse)")
    exp.add_argument("--segment", action="append", help="only this segment (repeatable; default: all)")
    exp.add_argument("--force", action="store_true",
                     help="export even when drift monitoring or the volume check says hold "
                          "(after a person checked the report)")
    exp.add_argument("--json", action="store_true", help="print the manifest")


def run(args: argparse.Namespace) -> int:
    if args.action != "export":
        return segments_mod.run(args)
    from c360.marketing.exports.export import run_export_cli

    try:
        defined = segments_mod.load_segments(args.file)
    except segments_mod.SegmentConfigError as exc:
        log.error("%s", exc)
        return 1
    return run_export_cli(args, defined)
