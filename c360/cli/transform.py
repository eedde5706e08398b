"""`c360 transform --date D`: the dbt steps of the nightly for a date, as the DAGs run them.

    c360 transform --date D                       dbt build + Parquet export of the snapshot (c360_transform)
    c360 transform --date D --scores              load D's scores, build score marts and segments (c360_score)
    c360 transform --date D --training-snapshots  backfill + export the monthly snapshots training needs (c360_train)
"""

from __future__ import annotations

import argparse
import logging
from datetime import date

from c360.config import get_settings

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="data date (default: the latest loaded)")
    p.add_argument("--no-export", action="store_true", help="skip the Parquet export of the snapshot")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--scores", action="store_true",
                      help="build the score marts, customer_360 and the segments on the date's scores "
                           "(read from C360_SCORES_DIR)")
    what.add_argument("--training-snapshots", action="store_true",
                      help="backfill and export the monthly feature snapshots (and labels) training needs")


def run(args: argparse.Namespace) -> int:
    from c360.pipeline import transform

    settings = get_settings()
    if args.scores:
        from c360.pipeline.modeling import check_scored

        if args.date is None:
            raise SystemExit("--scores needs --date")
        scored = check_scored(args.date, settings)
        result = transform.build_scores(args.date, settings)
        print(f"scores for {args.date}: {scored}; dbt {result.summary()} in {result.elapsed_seconds:.1f} s")
        return 0
    if args.training_snapshots:
        from c360.pipeline import modeling

        if args.date is None:
            raise SystemExit("--training-snapshots needs --date")
        done = modeling.prepare_training_snapshots(args.date, settings)
        print(f"training snapshots for {args.date}: backfilled {', '.join(map(str, done)) or 'none (all present)'}")
        return 0
    result = transform.build(args.date, settings)
    print(f"dbt build for {args.date or 'the latest date'}: {result.summary()} in {result.elapsed_seconds:.1f} s")
    if not args.no_export:
        exported = transform.export_feature_parquet(args.date, settings)
        for table, parts in exported.written.items():
            for d, (path, rows) in sorted(parts.items()):
                print(f"  {table} as_of_date={d}: {rows:,} rows -> {path}")
    return 0
