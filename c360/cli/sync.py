"""`c360 sync --date D [--segment S] [--destination NAME]`: send the night's segment changes (docs/destinations.md).

Exit codes: 0 synced (or no destination configured), 1 failed (the message names the destination, segment, date and
batch; rerun the same command to send the rest), 3 the date has no published export (held back or not exported).
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, required=True, help="as_of_date of the changes (YYYY-MM-DD)")
    p.add_argument("--segment", action="append", help="only this segment (repeatable; default: each destination's)")
    p.add_argument("--destination", action="append", help="only this destination (repeatable; default: all)")
    p.add_argument("--segments-file", help="segments.yml to use (default: the repository's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from c360.config import SettingsError, get_settings
    from c360.marketing.activation.destinations import DestinationConfigError, SyncError, load_destinations
    from c360.marketing.activation.sync import NotExported, sync_date
    from c360.marketing.segments import SegmentConfigError, load_segments
    from c360.pipeline.warehouse import WarehouseLocked

    settings = get_settings()
    try:
        segments = load_segments(args.segments_file)
        destinations = load_destinations(settings, segments)
    except (SegmentConfigError, DestinationConfigError) as exc:
        log.error("%s", exc)
        return 1
    if not destinations:
        print(f"No destination configured ({settings.destinations_file} does not exist): nothing to sync. "
              "See docs/destinations.md.")
        return 0
    try:
        result = sync_date(args.date, settings, destinations, segments, only_segments=args.segment,
                           only_destinations=args.destination)
    except NotExported as exc:
        log.error("%s", exc)
        return 3
    except (SyncError, SettingsError, WarehouseLocked) as exc:
        log.error("%s", exc)
        return 1
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"\nSync of {result.as_of_date}")
        print(f"  {'destination':<14}{'segment':<32}{'sent':>8}{'acked':>8}{'dropped':>9}  status")
        for s in result.segments:
            print(f"  {s.destination:<14}{s.segment:<32}{s.sent:>8,}{s.acknowledged:>8,}{s.dropped:>9,}  "
                  f"{'FAILED' if s.error else 'ok'}")
    for s in result.failed:
        print(f"FAILED: {s.error}")
    return 1 if result.failed else 0
