"""`c360 segments`: list, show, check and size the segments of segments.yml (c360.marketing.segments) and
`export` them (c360.marketing.exports, docs/exports.md).

Composed here, above both modules, so c360.marketing.segments never imports the exports (which import segments).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path

from c360.config import get_settings
from c360.marketing.exports.export import MANIFEST, ExportError, ExportHeld, export_segments
from c360.marketing.segments import (
    DEFAULT_SEGMENTS_FILE,
    PREDICATE_TABLE,
    Segment,
    SegmentConfigError,
    check_predicates,
    get_segment,
    latest_segment_date,
    load_segments,
    segment_sizes,
    segments_dbt_var,
)
from c360.pipeline.warehouse import WarehouseLocked, relation_exists

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = _segment_arguments(p)
    exp = sub.add_parser("export", help="write the exports for a date (docs/exports.md)")
    exp.add_argument("--date", type=date.fromisoformat, help="as_of_date (default: the latest in the warehouse)")
    exp.add_argument("--segment", action="append", help="only this segment (repeatable; default: all)")
    exp.add_argument("--force", action="store_true",
                     help="export even when drift monitoring or the volume check says hold "
                          "(after a person checked the report)")
    exp.add_argument("--json", action="store_true", help="print the manifest")


def run(args: argparse.Namespace) -> int:
    if args.action != "export":
        return _run_segment_action(args)
    try:
        defined = load_segments(args.file)
    except SegmentConfigError as exc:
        log.error("%s", exc)
        return 1
    return run_export_cli(args, defined)


def _segment_arguments(p: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The `c360 segments` actions that need only the definitions and the warehouse; returns the sub-parsers, to
    which add_arguments adds `export`."""
    p.add_argument("--file", type=Path, default=None, help=f"segments file (default: {DEFAULT_SEGMENTS_FILE})")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the defined segments")
    show = sub.add_parser("show", help="one segment's definition")
    show.add_argument("name")
    for action, help_text in (("sizes", "members and exportable rows per segment for a date"),
                              ("deltas", "customers who entered / exited each segment on a date")):
        sp = sub.add_parser(action, help=help_text)
        sp.add_argument("--date", type=date.fromisoformat, help="as_of_date (default: the latest in the warehouse)")
        sp.add_argument("--json", action="store_true", help="print JSON")
    check = sub.add_parser("check", help="validate the file and bind every predicate against the feature snapshot")
    check.add_argument("--table", default=PREDICATE_TABLE, help="table the predicates read (scores added)")
    sub.add_parser("vars", help="print the dbt var holding the definitions (JSON)")
    return sub


def _run_segment_action(args: argparse.Namespace) -> int:
    try:
        segments = load_segments(args.file)
    except SegmentConfigError as exc:
        log.error("%s", exc)
        return 1
    if args.action == "list":
        print(f"{'segment':<32}{'consent':<11}{'destination':<13}where")
        for s in segments:
            print(f"{s.name:<32}{s.required_consent:<11}{s.destination:<13}{s.where_sql}")
        return 0
    if args.action == "show":
        try:
            seg = get_segment(segments, args.name)
            print(json.dumps({**seg.as_dict(), "where_sql": seg.where_sql}, indent=2))
        except SegmentConfigError as exc:
            log.error("%s", exc)
            return 1
        return 0
    if args.action == "vars":
        print(json.dumps(segments_dbt_var(args.file)))
        return 0
    return _run_warehouse_action(args, segments)


def _run_warehouse_action(args: argparse.Namespace, segments: list[Segment]) -> int:
    from c360.pipeline.warehouse import connect

    settings = get_settings()
    if not settings.warehouse_path.exists():
        log.error("No warehouse at %s yet: run `c360 nightly` (or ingest + dbt) first.", settings.warehouse_path)
        return 1
    con = connect(settings, read_only=True)
    try:
        if args.action == "check":
            problems = check_predicates(con, segments, args.table) if relation_exists(con, args.table) else [
                f"{args.table} does not exist yet: the file is valid, predicates were not bound"]
            for p in problems:
                print(p)
            print(f"{len(segments)} segments, {len(problems)} problem(s)")
            return 1 if problems else 0
        day = args.date or latest_segment_date(con)
        if day is None:
            log.error("marts.segment_members has no rows: build the segment marts (dbt) first.")
            return 1
        sizes = segment_sizes(con, day, segments)
    finally:
        con.close()
    if args.json:
        print(json.dumps({"as_of_date": day.isoformat(), "segments": sizes}, indent=2))
    elif args.action == "sizes":
        print(f"Segments on {day}")
        print(f"  {'segment':<32}{'members':>10}{'consent':>10}{'exported':>10}  consent rule")
        for r in sizes:
            print(f"  {r['segment']:<32}{r['members']:>10,}{r['with_marketing_consent']:>10,}{r['exportable']:>10,}"
                  f"  {r['required_consent']}")
    else:
        print(f"Segment changes on {day} (all members, before the consent filter)")
        print(f"  {'segment':<32}{'entered':>10}{'exited':>10}")
        for r in sizes:
            print(f"  {r['segment']:<32}{r['entered']:>10,}{r['exited']:>10,}")
    return 0


def print_export_summary(manifest: dict) -> None:
    print(f"\nExports for {manifest['as_of_date']} (export {manifest['export_id']}, run {manifest['run_id']})")
    print(f"  {'segment':<32}{'rows':>9}{'no consent':>12}{'entered':>9}{'exited':>8}  destination")
    for name, s in manifest["segments"].items():
        if s["export_id"] != manifest["export_id"]:
            continue
        print(f"  {name:<32}{s['rows']:>9,}{s['excluded_without_consent']:>12,}{s['entered']:>9,}"
              f"{s['exited']:>8,}  {s['destination']}")
    print(f"  drift: {manifest['drift_check']['message']}")
    print(f"  manifest: {manifest['export_uri']}/dt={manifest['as_of_date']}/{MANIFEST}")


def run_export_cli(args: argparse.Namespace, segments: list[Segment]) -> int:
    """`c360 segments export`: 0 = exported, 3 = held back (drift or volume), 1 = failed."""
    try:
        manifest = export_segments(args.date, only=args.segment, segments=segments, force=args.force)
    except ExportHeld as exc:
        log.error("%s", exc)
        return 3
    except (ExportError, SegmentConfigError, WarehouseLocked) as exc:
        log.error("%s", exc)
        return 1
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print_export_summary(manifest)
    return 0
