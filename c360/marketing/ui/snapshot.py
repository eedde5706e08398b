"""A read-only copy of the warehouse file for the segments page, refreshed when the file changes.

DuckDB allows one writing process per file, and a read-only connection from another process takes a lock that makes
the nightly's writer fail (or wait, with C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS). So the page never opens the live file:
it copies it (plain reads take no DuckDB lock) and opens the copy. A copy is kept only when it is consistent:
the file and its WAL have the same size and mtime before and after the copy (nothing was written meanwhile) and the
copy opens and answers a query. Otherwise the previous good copy stays in use and the page says how old it is.

With the Spark SQL warehouse (C360_WAREHOUSE=spark) the file is the ingestion's ledger and the marts are Spark tables:
the copy is of the ledger, and a copy's connection is the Spark reader (c360.pipeline.spark_warehouse.reader: views
over the Spark tables' Parquet files, the ledger copy for raw.* and the other ledger tables). The source stamp then
also covers the Spark warehouse's folders, so a night that rewrote the Spark tables gives a new copy (and new facts).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from c360.config import Settings

log = logging.getLogger(__name__)

COPY_ATTEMPTS = 3


@dataclass(frozen=True)
class Snapshot:
    path: Path  # the copy, opened read-only by readers
    source_stamp: tuple  # (size, mtime_ns) of the warehouse file and of its WAL when copied (+ the Spark folders')
    taken_at: datetime  # UTC
    spark: Settings | None = None  # the Spark warehouse's settings: the copy is its ledger

    def connect(self):
        if self.spark is not None:
            from c360.pipeline.spark_warehouse import reader

            return reader(self.spark, ledger_path=self.path)
        con = duckdb.connect(str(self.path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        return con


def _stamp(path: Path) -> tuple:
    out = []
    for p in (path, Path(f"{path}.wal")):
        try:
            st = p.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _folders_stamp(root: Path) -> tuple[int, int]:
    """(folders, newest mtime) under the Spark warehouse: a table rewritten adds and removes files in its folder (or
    a partition's), which moves the folder's mtime."""
    folders = [p for p in root.rglob("*") if p.is_dir()] if root.is_dir() else []
    return len(folders), max((p.stat().st_mtime_ns for p in folders), default=0)


class SnapshotManager:
    """Holds the current copy of `source` under `folder`; `current()` refreshes it when the source changed."""

    def __init__(self, source: Path, folder: Path, min_interval_seconds: float = 5.0,
                 spark: Settings | None = None):
        # One sub-folder per serving process: two pages on one data folder never delete each other's copies;
        # folders of processes that are gone are removed (a copy is as big as the warehouse).
        self.source, self.folder = Path(source), Path(folder) / str(os.getpid())
        _remove_orphans(Path(folder))
        self.min_interval = min_interval_seconds
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._checked_at = 0.0
        self.last_problem: str | None = None  # why the newest state could not be copied (shown on the page)
        self._last_seen: tuple | None = None  # the file's stamp at the previous check
        self.spark = spark  # the Spark warehouse's settings when `source` is its ledger
        self._spark_dir = Path(spark.spark_warehouse_dir) if spark is not None else None

    def _source_stamp(self) -> tuple:
        stamp = _stamp(self.source)
        return stamp if self._spark_dir is None else (*stamp, _folders_stamp(self._spark_dir))

    def current(self, *, refresh: bool = True) -> Snapshot | None:
        """The newest consistent copy (None when the warehouse does not exist and was never copied)."""
        if refresh and time.monotonic() - self._checked_at >= self.min_interval:
            self.refresh()
        return self._current

    def refresh(self, *, wait_for_quiet: bool = False) -> Snapshot | None:
        """Copy the warehouse if it changed since the current copy. `wait_for_quiet` (the background refresher):
        only once the file looked the same at two consecutive checks, so a nightly that writes for minutes does not
        cost a full copy of the file at every check (a copy of a GB-sized file takes seconds of disk time)."""
        with self._lock:
            self._checked_at = time.monotonic()
            if not self.source.exists():
                self.last_problem = f"no warehouse at {self.source} yet (run the nightly)"
                return self._current
            stamp = self._source_stamp()
            if self._current is not None and self._current.source_stamp == stamp:
                self.last_problem = None
                return self._current
            if wait_for_quiet and self._current is not None and stamp != self._last_seen:
                self._last_seen = stamp
                self.last_problem = (f"the warehouse is being written (the nightly may be running): this page shows "
                                     f"the copy of {self._current.taken_at:%Y-%m-%d %H:%M} UTC and refreshes once the "
                                     "writes stop")
                return self._current
            for _ in range(COPY_ATTEMPTS):
                snap = self._copy(stamp)
                if snap is not None:
                    old, self._current = self._current, snap
                    self.last_problem = None
                    self._remove_old(keep={snap.path, old.path if old else None})
                    return snap
                time.sleep(0.2)
                stamp = self._source_stamp()
            self.last_problem = (f"the warehouse {self.source} is being written (the nightly is running): showing "
                                 "the last consistent copy" if self._current else
                                 f"the warehouse {self.source} is being written and no consistent copy exists yet: "
                                 "reload in a minute")
            return self._current

    def _copy(self, stamp: tuple) -> Snapshot | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"warehouse-{time.time_ns()}"
        tmp = self.folder / f".{name}.duckdb"
        final = self.folder / f"{name}.duckdb"
        try:
            shutil.copyfile(self.source, tmp)
            wal = Path(f"{self.source}.wal")
            if stamp[1] is not None:
                with contextlib.suppress(FileNotFoundError):  # checkpointed meanwhile: the stamp check sees it
                    shutil.copyfile(wal, f"{tmp}.wal")
            if self._source_stamp() != stamp:
                raise OSError("the file changed while it was copied")
            for suffix in ("", ".wal"):
                if Path(f"{tmp}{suffix}").exists():
                    os.replace(f"{tmp}{suffix}", f"{final}{suffix}")
            con = duckdb.connect(str(final), read_only=True)  # a torn copy fails here, not in a page request
            try:
                con.execute("SELECT count(*) FROM information_schema.tables").fetchone()
            finally:
                con.close()
        except Exception as exc:  # noqa: BLE001 - any failure means: not a usable copy; keep the previous one
            log.info("warehouse copy not usable (%s); keeping the previous one", exc)
            for p in (tmp, Path(f"{tmp}.wal"), final, Path(f"{final}.wal")):
                p.unlink(missing_ok=True)
            return None
        return Snapshot(final, stamp, datetime.now(UTC), self.spark)

    def close(self) -> None:
        """Delete this process's copies (the server is stopping)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _remove_old(self, keep: set) -> None:
        # The copy before the current one is kept: a request may still be reading it (unlinking an open file is
        # harmless on POSIX, but a request that opens it a moment later would fail).
        for p in self.folder.glob("warehouse-*.duckdb"):
            if p not in keep:
                p.unlink(missing_ok=True)
                Path(f"{p}.wal").unlink(missing_ok=True)


def _remove_orphans(base: Path) -> None:
    if not base.is_dir():
        return
    for child in base.iterdir():
        if not child.name.isdigit() or int(child.name) == os.getpid():
            continue
        try:
            os.kill(int(child.name), 0)
        except ProcessLookupError:
            shutil.rmtree(child, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass
