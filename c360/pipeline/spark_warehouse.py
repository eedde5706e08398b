"""The Spark SQL warehouse (C360_WAREHOUSE=spark; docs/scale.md "Spark SQL warehouse").

dbt builds the models there through dbt-spark (profile target `spark`). Around it, three pieces:

- `session()`: the Spark session, configured as the dbt profile configures it (Parquet tables under
  spark_warehouse_dir, an embedded Derby metastore at spark_metastore_dir, UTC). In a process that runs dbt too,
  both get the same session.
- the raw tables: the ingestion validates and keeps its ledger (raw.*, quarantine, audit) in the DuckDB file as
  on the DuckDB warehouse, then c360.ingest.spark_publish writes the landing dates that changed to the Spark raw
  tables (Parquet, partitioned by _dt).
- `reader()`: what the readers (feature-store export, segment exports, summaries) open instead of the DuckDB file:
  an in-memory DuckDB connection whose marts/feature_store/... views read the Spark tables' Parquet files in place,
  and whose raw, monitoring, activation, ... views read the ledger file's own tables. The readers' SQL is unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from c360.config import Settings, get_settings

log = logging.getLogger(__name__)

# the schemas dbt builds (dbt_project.yml) and the score views' raw schema
MODEL_SCHEMAS = ("staging", "intermediate", "marts", "pii", "feature_store", "feature_store_work", "reference")


def session(settings: Settings | None = None):
    """The Spark session of the Spark warehouse: the same settings as dbt_project/profiles.yml's `spark` target."""
    from pyspark.sql import SparkSession

    settings = settings or get_settings()
    stop_other_session(settings)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def stop_other_session(settings: Settings) -> None:
    """Stop this process's Spark session when it is not the warehouse's (another warehouse dir, or no Hive catalog):
    its static settings cannot change, and dbt-spark would silently reuse it (getOrCreate) and write elsewhere."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        return
    conf = active.sparkContext.getConf()
    warehouse = conf.get("spark.sql.warehouse.dir", "").removeprefix("file:").rstrip("/")
    if warehouse != str(settings.spark_warehouse_dir).rstrip("/") or \
            conf.get("spark.sql.catalogImplementation", "") != "hive":
        log.info("stopping this process's Spark session (warehouse %s): the Spark warehouse needs its own", warehouse)
        active.stop()


def session_conf(settings: Settings) -> dict[str, str]:
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": "c360-dbt",
        "spark.sql.warehouse.dir": str(settings.spark_warehouse_dir),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={settings.spark_metastore_dir};create=true",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.hive.metastorePartitionPruningFallbackOnException": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
    }


def table_dir(settings: Settings, schema: str, table: str) -> Path:
    """Where Spark keeps a managed table: <spark.sql.warehouse.dir>/<database>.db/<table>."""
    return Path(settings.spark_warehouse_dir) / f"{schema}.db" / table


def delete_rows(spark, table: str, condition) -> int:
    """Rewrite the Spark table `schema.name` without the rows for which `condition` (a pyspark Column) holds;
    returns how many went. For the erasure (c360.privacy.erasure): Parquet tables have no DELETE.

    The rows kept are written to a staging table beside it, which then overwrites the whole table (static partition
    overwrite, so a partition left without rows is emptied, not kept), and is dropped. Not atomic, like dbt-spark's
    table materialization on Parquet: a failure during the overwrite leaves the table short of rows until the model
    is built again (docs/runbooks.md); the staging table stays then, and the next call replaces it.
    """
    from pyspark.sql import functions as F

    schema, name = table.split(".")
    target, staging = f"`{schema}`.`{name}`", f"`{schema}`.`c360_rewrite_{name}`"
    rows = spark.table(target)
    removed = rows.filter(condition).count()
    if not removed:
        return 0
    spark.sql(f"DROP TABLE IF EXISTS {staging}")
    rows.filter(~F.coalesce(condition, F.lit(False))).write.format("parquet").saveAsTable(staging)
    mode = "spark.sql.sources.partitionOverwriteMode"
    previous = spark.conf.get(mode)
    spark.conf.set(mode, "static")
    try:
        spark.table(staging).write.insertInto(target, overwrite=True)
    finally:
        spark.conf.set(mode, previous)
    spark.sql(f"DROP TABLE {staging}")
    return removed


# ---------------------------------------------------------------------------------------------------------------
# readers: DuckDB over the Spark tables' Parquet

_SPARK_TO_DUCKDB = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE",
                    "boolean": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMPTZ", "float": "FLOAT"}


def reader(settings: Settings | None = None, ledger_schemas: tuple[str, ...] = (), ledger_path: Path | None = None):
    """A read-only DuckDB connection to the Spark warehouse (see the module's docstring).

    Views: <schema>.<table> for every table the Spark warehouse holds under spark_warehouse_dir (the Parquet files,
    Hive partition folders as columns, as Spark places them: last), and the DuckDB ledger file's own tables (raw.*,
    monitoring.psi, ...: every schema dbt does not build). A table
    with no data file yet (an empty partitioned table) is an empty view with the columns the metastore gives it.

    ledger_schemas: schemas whose tables live in the ledger file and are written through this connection (the
    destination sync's `activation` log beside the Spark tables' export rows): the ledger is attached read-write
    then, the schemas are created there, and unqualified names in them resolve to the ledger (search_path).
    ledger_path: another copy of the ledger to read (the segments page's snapshot), read-only.
    """
    import duckdb

    settings = settings or get_settings()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings.warehouse_memory_limit}'")
    ledger = Path(ledger_path or settings.warehouse_path)
    if ledger_schemas and ledger_path is None:
        ledger.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"attach '{_literal(ledger)}' as ledger")
        for schema in ledger_schemas:
            con.execute(f'create schema if not exists ledger."{schema}"')
        con.execute("set search_path = '" + ",".join(["memory.main", *(f"ledger.{s}" for s in ledger_schemas)]) + "'")
    elif ledger.exists():
        con.execute(f"attach '{_literal(ledger)}' as ledger (read_only)")
    if ledger.exists():
        # the ledger's own tables (raw.*, monitoring.psi, activation.sync_log, privacy.*, ...), read in place; the
        # schemas dbt builds are Spark's (a DuckDB build sharing the file, as in the tests, stays out of sight)
        for schema, table in con.execute(
                "select schema_name, table_name from duckdb_tables() where database_name = 'ledger' "
                "order by all").fetchall():
            if schema in MODEL_SCHEMAS or schema in ledger_schemas:
                continue
            con.execute(f'create schema if not exists "{schema}"')
            con.execute(f'create view "{schema}"."{table}" as select * from ledger."{schema}"."{table}"')
    root = Path(settings.spark_warehouse_dir)
    empty: list[tuple[str, str]] = []
    for schema in MODEL_SCHEMAS:
        folder = root / f"{schema}.db"
        if not folder.is_dir():
            continue
        con.execute(f'create schema if not exists "{schema}"')
        for table_dir_ in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            files = [p for p in table_dir_.rglob("*.parquet") if not any(
                part.startswith((".", "_")) for part in p.relative_to(table_dir_).parts)]
            if not files:
                empty.append((schema, table_dir_.name))
                continue
            partitioned = any(p.parent != table_dir_ for p in files)
            con.execute(
                f'create view "{schema}"."{table_dir_.name}" as select * from read_parquet('
                f"{_file_list(files)}, hive_partitioning = {str(partitioned).lower()}, union_by_name = true)")
    if empty:
        _empty_views(con, settings, empty)
    return con


def _empty_views(con, settings: Settings, tables: list[tuple[str, str]]) -> None:
    spark = session(settings)
    for schema, table in tables:
        try:
            fields = spark.table(f"{schema}.{table}").schema.fields
        except Exception:  # noqa: BLE001 - a folder the metastore does not know (a dropped table's leftovers)
            continue
        cols = ", ".join(f'cast(null as {_SPARK_TO_DUCKDB.get(f.dataType.simpleString(), "VARCHAR")}) as "{f.name}"'
                         for f in fields)
        con.execute(f'create view "{schema}"."{table}" as select {cols} where false')


def _literal(path) -> str:
    return str(path).replace("'", "''")


def _file_list(files: list[Path]) -> str:
    return "[" + ", ".join(f"'{_literal(p.as_posix())}'" for p in sorted(files)) + "]"
