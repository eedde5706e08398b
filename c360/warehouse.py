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


def connect(settings: Settings | None = None, read_only: bool = False, path: Path | None = None):
    """Open the warehouse (creating its folder), session time zone UTC.

    Waits up to settings.warehouse_lock_timeout_seconds for a lock held by another process, then raises
    WarehouseLocked naming the file and the process holding it.
    """
    settings = settings or get_settings()
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
            # DuckDB: "... Conflicting lock is held in /path/to/python3.11 (PID 123). See also https://...":
            # keep the whole program path and PID (paths hold dots), drop only the trailing link.
            holder = re.search(r"held in (.+?)(?:\. See also\b.*)?\.?$", str(exc), re.S)
            raise WarehouseLocked(
                f"The warehouse file {path} is locked by another process"
                f"{' (' + holder.group(1).strip() + ')' if holder else ''}. DuckDB allows one writer at a time: "
                "wait for the other run to finish (in Airflow, tasks that write the warehouse share the "
                "'warehouse' pool of one slot), or close the session that holds it, then retry. "
                "Set C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS to wait for the lock instead of failing."
            ) from exc
    con.execute("SET TimeZone = 'UTC'")
    return con
