"""Initial (historical) load: spread one big file of history into daily landing partitions by each row's own date.

After `c360 load-history orders.csv --entity transactions`, the landing zone looks as if the history had
arrived day by day, and the normal nightly ingestion loads it (all of it on the first run). Rows are copied
as text, unvalidated: ingestion validates and quarantines exactly as for nightly files, so nothing is lost.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections import defaultdict
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from c360.ingest.contract import ENTITIES, JSON_FORMATS
from c360.ingest.landed_file import read_landed_file
from c360.ingest.readers import file_format
from c360.storage import Storage

log = logging.getLogger(__name__)


def spread_history(path: Path, entity_name: str, storage: Storage, name: str | None = None) -> dict[date, int]:
    """Write path's rows to <entity>/dt=<UTC date of the row's event time>/history-<name>.*; returns rows per dt.

    Rows whose date cannot be read (and malformed records) go to the latest partition, where ingestion
    quarantines them with their reason.
    """
    entity = ENTITIES[entity_name]
    fmt = file_format(path.name)
    if fmt is None:
        raise ValueError(f"{path}: unsupported file type; expected .csv, .csv.gz, .parquet or .jsonl(.gz)")
    if fmt in JSON_FORMATS and entity.formats != JSON_FORMATS:
        # spread as .jsonl.gz into a folder whose ingestion reads only tables, its rows would never load
        raise ValueError(f"{path}: JSON lines are landed for tracking only; convert it to .csv or .parquet for "
                         f"{entity.name} (docs/landing_contract.md)")
    name = name or path.name.split(".")[0]
    table = read_landed_file(path.read_bytes(), path.name, entity)
    if table.num_rows == 0:
        raise ValueError(f"{path}: no records")
    problem = table.column("_schema_problem")[0].as_py()
    if problem:
        # spreading would drop the unknown columns and hide the drift from ingestion's schema_mismatch check
        raise ValueError(f"{path}: {problem}. Rename the columns to the contract's (docs/landing_contract.md).")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", table)
    col = entity.event_time_column
    days = [
        r[0]
        for r in con.execute(
            f"SELECT CASE WHEN _malformed THEN NULL ELSE CAST(TRY_CAST(trim(\"{col}\") AS TIMESTAMPTZ) AS DATE) END FROM t"
        ).fetchall()
    ]
    known = [d for d in days if d is not None]
    if not known:
        raise ValueError(f"{path}: no row has a readable {col}; cannot spread it by date")
    latest = max(known)
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, d in enumerate(days):
        by_day[d or latest].append(i)

    malformed = table.column("_malformed").to_pylist()
    records = table.column("_record").to_pylist()
    data_cols = table.select(entity.landed_column_names)
    counts: dict[date, int] = {}
    for day in sorted(by_day):
        idx = by_day[day]
        prefix = f"{entity.name}/dt={day.isoformat()}/history-{name}"
        if fmt in JSON_FORMATS:
            body = "\n".join(records[i] for i in idx) + "\n"
            storage.write_bytes(prefix + ".jsonl.gz", gzip.compress(body.encode("utf-8"), mtime=0))
        else:
            good = [i for i in idx if not malformed[i]]
            bad = [i for i in idx if malformed[i]]
            if good:
                buf = io.BytesIO()
                pq.write_table(data_cols.take(pa.array(good)), buf)
                storage.write_bytes(prefix + ".parquet", buf.getvalue())
            if bad:
                # Malformed CSV lines stay CSV text, so ingestion sees (and quarantines) them as they were.
                body = ",".join(entity.column_names) + "\n" + "\n".join(records[i] for i in bad) + "\n"
                storage.write_bytes(prefix + "-malformed.csv", body.encode("utf-8"))
        counts[day] = len(idx)
    log.info("%s: %s rows spread over %d partitions (%s .. %s) in %s",
             path, f"{sum(counts.values()):,}", len(counts), min(counts), max(counts), storage.uri_of(entity.name))
    return counts
