"""`c360 monitor`: population stability (PSI) of features and scores vs the training snapshot
(c360.pipeline.monitoring does the work)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import date

from c360.config import get_settings
from c360.pipeline.monitoring import PSI_TABLE, REFERENCE_TAG, run_monitoring, should_hold_exports


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, required=True, help="as_of_date to check")
    p.add_argument("--reference-date", type=date.fromisoformat,
                   help=f"training snapshot to compare with (default: C360_PSI_REFERENCE_DATE, then the churn "
                        f"@champion tag {REFERENCE_TAG})")
    p.add_argument("--features", help="comma-separated feature columns (default: C360_PSI_FEATURES or built-in)")
    p.add_argument("--scores", help="comma-separated score columns (default: C360_PSI_SCORES or built-in)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    def split(raw: str | None) -> tuple[str, ...] | None:
        return tuple(x.strip() for x in raw.split(",") if x.strip()) if raw else None

    settings = get_settings()
    result = run_monitoring(settings, args.date, args.reference_date,
                            features=split(args.features), scores=split(args.scores))
    decision = should_hold_exports(settings, args.date, rows=[asdict(r) for r in result.rows])
    if args.json:
        print(json.dumps({**result.as_dict(), "exports": decision.as_dict()}, indent=2))
        return 0
    print(f"\nPSI for {args.date} vs reference {result.reference_date or 'none'} -> {PSI_TABLE}")
    for r in result.rows:
        print(f"  {r.kind:<8}{r.name:<28}{r.psi:>9.4f}  {r.status}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"\n  {decision.message}")
    return 0
