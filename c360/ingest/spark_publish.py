"""The raw tables on the Spark SQL warehouse (C360_WAREHOUSE=spark; docs/scale.md "Spark SQL warehouse").

The ingestion validates, quarantines and keeps its ledger in the DuckDB file whichever the warehouse; with the
Spark warehouse, publish_raw() then writes the raw tables' landing dates that changed since its last run to the
Spark raw tables (Parquet, partitioned by _dt), so every landed row reaches dbt there too.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from pathlib import Path

from c360.config import Settings, get_settings
from c360.pipeline.spark_warehouse import session

log = logging.getLogger(__name__)

# the raw tables the dbt project reads (macros/raw_tables.sql creates them on Spark, partitioned by _dt)
RAW_TABLES = ("transactions", "customers", "products", "tracking_events", "transactions_removed")
# the ledger of what publish_raw() wrote: one fingerprint per table and landing date
PUBLISHED_TABLE = "raw.spark_published"


def _fingerprints(con, table: str) -> dict:
    """_dt -> (rows, xor of the rows' hashes, whole rows): changes when a row of that landing date is added, removed or
    changed."""
    return {r[0]: (r[1], r[2]) for r in con.execute(
        f"select _dt, count(*), bit_xor(hash(row_)) from raw.{table} as row_ group by _dt"
    ).fetchall()}


def publish_raw(settings: Settings | None = None, spark=None) -> dict[str, int]:
    """Write the raw tables' landing dates that changed since the last publish to the Spark raw tables.

    A changed date is rewritten whole (INSERT OVERWRITE of its partition); a date that no longer has rows loses its
    partition. The ledger (raw.spark_published in the DuckDB file) is updated after Spark has the data, so a
    failure in between publishes those dates again next time. Returns {table: dates written or dropped}.
    """
    from c360.pipeline import transform
    from c360.pipeline.warehouse import connect

    settings = settings or get_settings()
    # the Spark raw tables, created as dbt's on-run-start creates them (one definition: macros/raw_tables.sql)
    transform.run_dbt(["run-operation", "create_raw_tables_if_missing"], None, settings)
    spark = spark or session(settings)
    done: dict[str, int] = {}
    con = connect(settings)
    try:
        con.execute(f"create table if not exists {PUBLISHED_TABLE} (table_name varchar, _dt date, "
                    "row_count bigint, fingerprint ubigint, published_at timestamptz)")
        for table in RAW_TABLES:
            exists = con.execute("select count(*) from information_schema.tables where table_schema = 'raw' "
                                 "and table_name = ?", [table]).fetchone()[0]
            now = _fingerprints(con, table) if exists else {}
            before = {r[0]: (r[1], r[2]) for r in con.execute(
                f"select _dt, row_count, fingerprint from {PUBLISHED_TABLE} where table_name = ?", [table]).fetchall()}
            changed = sorted(d for d, fp in now.items() if before.get(d) != fp)
            gone = sorted(d for d in before if d not in now)
            if changed:
                _overwrite_partitions(con, spark, table, changed)
            for d in gone:
                spark.sql(f"alter table raw.{table} drop if exists partition (_dt = '{d.isoformat()}')")
            con.execute("begin")
            con.execute(f"delete from {PUBLISHED_TABLE} where table_name = ?", [table])
            if now:
                con.executemany(f"insert into {PUBLISHED_TABLE} values (?, ?, ?, ?, now())",
                                [(table, d, fp[0], fp[1]) for d, fp in now.items()])
            con.execute("commit")
            done[table] = len(changed) + len(gone)
            if changed or gone:
                log.info("published raw.%s to Spark: %s landing date(s) written, %s dropped", table, len(changed),
                         len(gone))
    finally:
        con.close()
    return done


def _overwrite_partitions(con, spark, table: str, dates: list) -> None:
    """The DuckDB rows of those landing dates, through Parquet, into the Spark table's partitions."""
    spark_cols = [(f.name, f.dataType.simpleString()) for f in spark.table(f"raw.{table}").schema if f.name != "_dt"]
    duck_cols = {r[0] for r in con.execute(f"describe raw.{table}").fetchall()}
    staging = Path(tempfile.mkdtemp(prefix=f"c360-publish-{table}-{uuid.uuid4().hex[:6]}-"))
    try:
        select = ", ".join(
            (f'cast("{name}" as varchar) as "{name}"' if name == "_row_hash" else f'"{name}"')
            if name in duck_cols else f'null as "{name}"' for name, _ in spark_cols)
        con.execute("create or replace temp table _publish_dates (d date)")
        con.executemany("insert into _publish_dates values (?)", [(d,) for d in dates])
        con.execute(f"copy (select {select}, _dt from raw.{table} where _dt in (select d from _publish_dates)) "
                    f"to '{staging.as_posix()}/rows' (format parquet, partition_by (_dt))")
        casts = ", ".join(f"cast(`{name}` as {kind}) as `{name}`" for name, kind in spark_cols)
        spark.sql(f"insert overwrite table raw.{table} partition (_dt) "
                  f"select {casts}, cast(_dt as date) from parquet.`{staging.as_posix()}/rows`")
        # a date whose rows all went (a replaced file) has no folder above: drop its partition
        written = {r[0] for r in con.execute(
            f"select distinct _dt from raw.{table} where _dt in (select d from _publish_dates)").fetchall()}
        for d in sorted(set(dates) - written):
            spark.sql(f"alter table raw.{table} drop if exists partition (_dt = '{d.isoformat()}')")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
