"""Throughput of the tracking vendor adapters (issue #18 target: >= 1M events/min per vendor).

    python -m bench.tracking_vendors [--events 200000] [--ingest]

Generates ~20k distinct events per vendor (c360dev/generate/vendors.py), repeats them to --events lines, and times
reading one landed file of them into the canonical text table (decode + parse + map + Arrow columns:
read_vendor_file), best of 3, in wall time and in this process's CPU time (on a shared machine the CPU figure is
the one to compare: wall time also counts the time spent waiting for a core). With --ingest, also times the whole tracking ingestion of one file of distinct
events (validation and loading in DuckDB included) in a temporary warehouse.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date

from c360.ingest.contract import TRACKING
from c360.ingest.vendors import read_vendor_file
from c360dev.generate.vendors import VENDORS, encode, journeys, landing_key

D = date(2026, 3, 10)


def _lines(vendor: str, n: int) -> list[str]:
    base, _ = encode(vendor, journeys(D, visitors=max(1, min(n, 20_000) // 11), prefix="b"))
    return (base * (n // len(base) + 1))[:n]


def adapter_rate(vendor: str, n: int) -> tuple[float, float, int]:
    """(events/min in wall time, events/min in CPU time, bytes)."""
    data = ("\n".join(_lines(vendor, n)) + "\n").encode()
    folder = "snowplow" if vendor.startswith("snowplow") else vendor
    key = landing_key(vendor, D)
    best = best_cpu = float("inf")
    for _ in range(3):
        started, cpu = time.perf_counter(), time.process_time()
        table = read_vendor_file(folder, data, key, TRACKING)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    assert table.num_rows == n and not any(table.column("_malformed").to_pylist())
    return n / best * 60, n / best_cpu * 60, len(data)


def ingest_rate(vendor: str, n: int) -> float:
    from c360.config import get_settings
    from c360.ingest.load import ingest
    from c360.storage import LocalStorage

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["C360_DATA_DIR"] = tmp
        for var in ("LANDING_URI", "WAREHOUSE_PATH"):
            os.environ.pop(var, None)
        settings = get_settings()
        lines, _ = encode(vendor, journeys(D, visitors=max(1, n // 11), prefix="i"))
        LocalStorage(settings.landing_uri).write_bytes(landing_key(vendor, D), ("\n".join(lines) + "\n").encode())
        started = time.perf_counter()
        t = ingest(D, settings, ["tracking"]).entities["tracking"]
        seconds = time.perf_counter() - started
        return t.landed / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--ingest", action="store_true", help="also time a whole ingestion (slower)")
    parser.add_argument("--vendors", nargs="+", default=list(VENDORS), choices=VENDORS)
    args = parser.parse_args()
    print(f"{'vendor':<14} {'events':>9} {'MB':>7} {'events/min (wall)':>18} {'events/min (CPU)':>17}"
          + ("  ingest events/min" if args.ingest else ""))
    for vendor in args.vendors:
        rate, cpu_rate, size = adapter_rate(vendor, args.events)
        line = f"{vendor:<14} {args.events:>9,} {size / 1e6:>7.1f} {rate:>18,.0f} {cpu_rate:>17,.0f}"
        if args.ingest:
            line += f"  {ingest_rate(vendor, args.events):>18,.0f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
