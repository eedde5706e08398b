"""`python -m c360dev.bench.sync --deltas 100000`: time to send a night's segment changes to a destination.

Builds a throw-away warehouse whose pii.segment_export_rows holds N consenting changes (entered/exited, with emails)
spread over --segments segments, a published manifest for the date and a destinations file pointing at the local
receiver (c360dev.receiver, 127.0.0.1, in this process), then times `sync_date` end to end: planning into
activation.sync_log, hashing, batching, the HTTP requests and the acknowledgements, --repeat times on a fresh
warehouse each. Also checks that the receiver applied every change exactly once. Prints one JSON document and
writes it to bench/results/sync-<stamp>.json. Target (issue 17): 100k changes in at most 60 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from c360.config import PROJECT_ROOT, get_settings

log = logging.getLogger("c360dev.bench.sync")
DAY = date(2025, 6, 2)
TARGET_SECONDS = 60.0


def _build(root: Path, deltas: int, segments: int):
    import duckdb

    wh = root / "warehouse.duckdb"
    con = duckdb.connect(str(wh))
    con.execute("CREATE SCHEMA pii")
    # the columns of the dbt view the sync reads; values generated in SQL (100k rows in well under a second)
    con.execute(f"""
        CREATE TABLE pii.segment_export_rows AS
        SELECT DATE '{DAY}' AS as_of_date, 'bench_' || (i % {segments}) AS segment,
               'cust' || lpad(i::VARCHAR, 8, '0') AS customer_id, (i % 3 <> 0) AS is_member,
               CASE WHEN i % 3 = 0 THEN 'exited' ELSE 'entered' END AS change, true AS consent_ok,
               '  Customer' || i || '@Example.com ' AS email
        FROM range({deltas}) t(i)""")
    con.close()
    exports = root / "exports"
    (exports / f"dt={DAY}").mkdir(parents=True)
    names = [f"bench_{k}" for k in range(segments)]
    (exports / f"dt={DAY}" / "manifest.json").write_text(json.dumps({"segments": {n: {} for n in names}}))
    return wh, exports, names


def run_once(deltas: int, segments: int, batch_size: int) -> dict:
    from c360.marketing.activation.destinations import DestinationConfig
    from c360.marketing.activation.sync import sync_date
    from c360dev.receiver import Receiver

    with tempfile.TemporaryDirectory(prefix="c360-bench-sync-") as tmp:
        wh, exports, names = _build(Path(tmp), deltas, segments)
        settings = dataclasses.replace(get_settings(), warehouse_path=wh, export_uri=str(exports),
                                       sync_batch_size=batch_size)
        with Receiver() as rec:
            cfg = DestinationConfig(name="bench", type="http_json", segments=tuple(names), batch_size=None,
                                    options={"url": rec.url})
            started = time.perf_counter()
            result = sync_date(DAY, settings, [cfg], [])
            seconds = time.perf_counter() - started
            received = rec.received
        failed = [s.error for s in result.failed]
        return {
            "seconds": round(seconds, 2),
            "deltas_per_second": round(deltas / seconds, 1),
            "requests": received.requests,
            "applied": len(received.applied),
            "replayed": sum(received.replayed.values()),
            "acknowledged_in_log": sum(s.acknowledged for s in result.segments),
            "failed": failed,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m c360dev.bench.sync", description=__doc__.splitlines()[0])
    p.add_argument("--deltas", type=int, default=100_000)
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = [run_once(args.deltas, args.segments, args.batch_size) for _ in range(args.repeat)]
    median = statistics.median(r["seconds"] for r in runs)
    ok = all(r["applied"] == args.deltas == r["acknowledged_in_log"] and not r["failed"] for r in runs)
    doc = {
        "benchmark": "sync", "deltas": args.deltas, "segments": args.segments, "batch_size": args.batch_size,
        "runs": runs, "median_seconds": median, "target_seconds": TARGET_SECONDS,
        "meets_target": ok and median <= TARGET_SECONDS, "exactly_once": ok,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = PROJECT_ROOT / "bench" / "results" / f"sync-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))
    return 0 if doc["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
