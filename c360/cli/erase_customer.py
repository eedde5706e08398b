"""`c360 erase-customer`: erase one customer, with every other customer id of the same person (identity graph), from
the warehouse, its Parquet copies and the exports (c360.privacy.erasure does the work; this module asks for
confirmation and prints the result)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from c360.config import get_settings
from c360.privacy.erasure import ErasureResult, erase_customer, print_summary

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("customer_id", metavar="CUSTOMER_ID", help="the shop's customer id (as landed)")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed, change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts, tickets)")
    p.add_argument("--no-compact", action="store_true",
                   help="skip rewriting the warehouse file (only when another erasure follows right away)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--this-id-only", action="store_true",
                   help="erase this customer id alone, not the other customer ids of its person (a wrong merge)")


def _as_json(result: ErasureResult) -> str:
    return json.dumps({
        "customer_key": result.customer_key, "dry_run": result.dry_run,
        "person_id": result.person_id, "member_keys": result.member_keys,
        "erased_at": result.erased_at.isoformat(timespec="seconds"),
        "previously_erased": [d.isoformat() for d in result.previously_erased],
        "tables": result.tables, "tombstones": result.tombstones, "cookies": result.cookies,
        "quarantine_scrubbed": result.quarantine_scrubbed,
        "files": [f.__dict__ for f in result.files], "compacted": result.compacted,
    }, indent=2)


def run(args: argparse.Namespace) -> int:
    from c360.marketing.exports.export import ExportError
    from c360.pipeline.warehouse import WarehouseLocked

    settings = get_settings()
    started = time.monotonic()
    try:
        if not args.dry_run and not args.yes:
            preview = erase_customer(args.customer_id, settings, dry_run=True, follow_person=not args.this_id_only)
            print_summary(preview)
            if not sys.stdin.isatty():
                log.error("Not erasing without confirmation: run it in a terminal, or add --yes.")
                return 2
            what = "this customer" if len(preview.member_keys) < 2 else \
                f"these {len(preview.member_keys)} customer ids of one person"
            answer = input(f"\nThis cannot be undone. Type 'erase' to erase {what}: ")
            if answer.strip() != "erase":
                print("Nothing erased.")
                return 1
        result = erase_customer(args.customer_id, settings, dry_run=args.dry_run, compact=not args.no_compact,
                                follow_person=not args.this_id_only)
    except (ValueError, FileNotFoundError, WarehouseLocked) as exc:
        log.error("%s", exc)
        return 1
    except ExportError as exc:
        log.error("The warehouse part is done, the exports are not: %s\nFix that, then run the same command "
                  "again to finish (privacy.erasure_log shows completed_at = NULL until then).", exc)
        return 1
    if args.json:
        print(_as_json(result))
    else:
        print_summary(result)
        print(f"  in {time.monotonic() - started:.1f} s")
    if result.unresolved and not result.dry_run:
        log.error("Erased except in %d file(s) that still name the customer (listed as NOT removed): rewrite or "
                  "delete them, then run the same command again to check.", len(result.unresolved))
        return 1
    return 0
