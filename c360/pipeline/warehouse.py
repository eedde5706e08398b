"""Connections to the DuckDB warehouse file, with a clear error when another process holds its write lock.

DuckDB lets one process write a database file at a time; a second writer gets an IO error naming the holder.
We turn that into `WarehouseLocked`, which says what to do, instead of letting a task fail cryptically.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import duckdb

from c360.config import Settings, get_settings

log = logging.getLogger(__name__)


class WarehouseLocked(RuntimeError):
    """Another process holds the warehouse file's lock."""


def lock_holder(duckdb_message: str) -> tuple[str | None, int | None]:
    """The holding program's path and PID from DuckDB's lock error ("... is held in /usr/bin/python3.11
    (PID 123) by user x. See also ..."): the path has dots of its own, so it ends at " (PID", not at a dot."""
    m = re.search(r"held in (.+?) \(PID (\d+)\)", duckdb_message)
    if m:
        return m.group(1).strip(), int(m.group(2))
    m = re.search(r"held in (.+?)(?:\. See also|$)", duckdb_message)
    return (m.group(1).strip() if m else None), None


def lock_message(path: Path, duckdb_message: str) -> str:
    """What a user reads when the warehouse is locked: the file, who holds it and what to do."""
    program, pid = lock_holder(duckdb_message)
    if pid is not None:
        holder = (f" by another process, PID {pid} ({program}); see it with `ps -o pid,etime,args -p {pid}` and, if it is a "
                  f"stale run, stop it with `kill {pid}`")
    elif program:
        holder = f" by another process ({program})"
    else:
        holder = " by another process"
    return (f"The warehouse file {path} is locked{holder}. DuckDB allows one writer at a time: wait for the other "
            "run to finish (in Airflow, tasks that write the warehouse share the 'warehouse' pool of one slot), or "
            "close the session that holds it, then retry. Set C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS to wait for the "
            "lock instead of failing.")


def connect(settings: Settings | None = None, read_only: bool = False, path: Path | None = None):
    """Open the warehouse (creating its folder), session time zone UTC, DuckDB's memory limit from settings.

    Waits up to settings.warehouse_lock_timeout_seconds for a lock held by another process, then raises
    WarehouseLocked naming the file and the process holding it.

    With C360_WAREHOUSE=spark the file is the ingestion's ledger (raw.*), and a read-only connection is instead a
    DuckDB view of the Spark warehouse (c360.pipeline.spark_warehouse.reader).
    """
    settings = settings or get_settings()
    if read_only and path is None and settings.warehouse == "spark":
        # the readers' SQL stays DuckDB's: views over the Spark tables' Parquet (c360.pipeline.spark_warehouse)
        from c360.pipeline.spark_warehouse import reader

        return reader(settings)
    path = Path(path or settings.warehouse_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + settings.warehouse_lock_timeout_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise WarehouseLocked(lock_message(path, str(exc))) from exc
    con.execute("SET TimeZone = 'UTC'")
    # validated by c360.config (a size or a percentage); the same limit as dbt's profile, so ingestion spills too
    con.execute(f"SET memory_limit = '{settings.warehouse_memory_limit}'")
    return con


def rollback(con, cause: BaseException) -> None:
    """Roll back the open transaction after `cause`, never hiding it: the caller re-raises `cause`.

    DuckDB may have ended the transaction itself (a failed write on a full disk leaves none to roll back, and
    ROLLBACK then raises "cannot rollback - no transaction is active"), or the connection may be gone. Either way
    nothing was committed; a second error here would only replace the real cause in the user's last line.
    """
    try:
        con.execute("ROLLBACK")
    except Exception as exc:  # noqa: BLE001 - logged; the caller raises the original error
        log.debug("ROLLBACK after %s: %s (nothing was committed)", cause.__class__.__name__, exc)


def relation_exists(con, qualified_name: str) -> bool:
    """Whether schema.table exists (as a table or view) in the open DuckDB connection.

    Lives here, below every module that reads the warehouse, so none of them imports another just for it."""
    schema, _, table = qualified_name.partition(".")
    return con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
        [schema, table],
    ).fetchone()[0] > 0
