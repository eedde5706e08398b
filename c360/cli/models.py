"""`c360 models`: the registry operations of spark_jobs.models (status, history, rollback, promote) plus `ensure`,
the first night's training of the models without a champion (c360.pipeline.modeling.ensure_champions)."""

from __future__ import annotations

import json
import sys
from datetime import date

from c360.config import get_settings
from c360.pipeline.modeling import ensure_champions


def add_arguments(parser) -> None:
    """`c360 models`: the registry operations of spark_jobs.models, plus `ensure --date D`."""
    from spark_jobs import models

    models.add_arguments(parser, actions=(*models.ACTIONS, "ensure"))
    parser.add_argument("--date", help="ensure: the data date to train as of (YYYY-MM-DD)")


def run(args) -> int:
    """`c360 models ensure` trains what has no champion (ensure_champions); the other actions are spark_jobs.models'."""
    from spark_jobs import models

    if args.action != "ensure":
        return models.run(args)
    if not args.date:
        print("--date is required for ensure", file=sys.stderr)
        return 2
    print(json.dumps(ensure_champions(date.fromisoformat(args.date), get_settings())))
    return 0
