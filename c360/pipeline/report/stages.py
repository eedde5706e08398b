"""The nightly stage log: one JSON line per finished stage, appended by whoever runs the stage, read by the report.

File: `<reports_dir>/runs/<D>/stages.jsonl`. One object per line:

    {"stage": "ingest", "started_at": "2025-06-02T01:00:03+00:00", "seconds": 12.4,
     "status": "success", "rows": 182340, "recorded_at": "2025-06-02T01:00:15+00:00", ...extra}

  stage        name of the step (free text; the report keeps the order of first appearance)
  started_at   ISO-8601 UTC start time (default: recorded_at - seconds)
  seconds      wall-clock duration
  status       success | failed | skipped
  rows         rows the stage wrote or read (null when it does not apply)
  recorded_at  when the line was appended
  extra keys   anything JSON-serialisable the stage wants to show (e.g. dag_id, attempt, error)

A rerun appends again: the report shows the latest line per stage and counts the attempts.

`c360 nightly` starts each night with a marker line `{"night_started": "<ISO time>", "dags": [...]}` (no
"stage" key: readers of stage records skip it). The report totals only the stages recorded since the last
marker, so a rerun's total does not include the first run's stages (e.g. its first-night training); earlier
stages are listed apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from c360.config import Settings

STATUSES = ("success", "failed", "skipped")


def stage_log_path(settings: Settings, day: date) -> Path:
    return Path(settings.reports_dir) / "runs" / day.isoformat() / "stages.jsonl"


def record_stage(settings: Settings, date: date, stage: str, seconds: float, status: str,
                 rows: int | None = None, **extra: Any) -> dict:
    """Append one stage record to the date's stage log; returns the record written."""
    if status not in STATUSES:
        raise ValueError(f"stage {stage!r}: status {status!r} is not one of {', '.join(STATUSES)}")
    now = datetime.now(UTC)
    started = extra.pop("started_at", None) or (now - timedelta(seconds=float(seconds))).isoformat(timespec="seconds")
    record = {"stage": stage, "started_at": str(started), "seconds": round(float(seconds), 3), "status": status,
              "rows": None if rows is None else int(rows), "recorded_at": now.isoformat(timespec="seconds"), **extra}
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    path = stage_log_path(settings, date)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write() on an O_APPEND descriptor: concurrent stages (parallel Airflow tasks) never interleave lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return record


class _StageRun:
    rows: int | None = None
    extra: dict[str, Any]

    def __init__(self) -> None:
        self.extra = {}


ERROR_CHARS = 4000


@contextmanager
def timed_stage(settings: Settings, date: date, stage: str) -> Iterator[_StageRun]:
    """Time a block and record it: `with timed_stage(s, d, "dbt") as st: ...; st.rows = n` (failed on exception)."""
    run = _StageRun()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    try:
        yield run
    except BaseException as exc:
        # long enough for a failed dbt test's offending rows and what to do (c360/pipeline/dbt_failures.py),
        # which the console's failure message and the run report repeat from here
        record_stage(settings, date, stage, time.monotonic() - t0, "failed", run.rows, started_at=started,
                     error=f"{exc.__class__.__name__}: {exc}"[:ERROR_CHARS], **run.extra)
        raise
    record_stage(settings, date, stage, time.monotonic() - t0, "success", run.rows, started_at=started, **run.extra)


def mark_night_started(settings: Settings, day: date, dags: list[str]) -> None:
    """Append the start-of-night marker (see the module docstring)."""
    line = json.dumps({"night_started": datetime.now(UTC).isoformat(timespec="seconds"), "dags": list(dags)})
    path = stage_log_path(settings, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def read_night(settings: Settings, day: date) -> tuple[list[dict], list[dict]]:
    """(records of the latest night, records of earlier runs of the date), split at the last start marker;
    without a marker (runs scheduled by Airflow itself) every record belongs to the latest night."""
    current: list[dict] = []
    earlier: list[dict] = []
    for rec in _read_lines(settings, day):
        if "night_started" in rec and "stage" not in rec:
            earlier.extend(current)
            current = []
        elif "stage" in rec:
            current.append(rec)
    return current, earlier


def _read_lines(settings: Settings, day: date) -> list[dict]:
    path = stage_log_path(settings, day)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line after a crash must not take the report down
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_stages(settings: Settings, day: date) -> list[dict]:
    """All stage records of the date in file order (every run); lines that are not valid JSON objects are skipped."""
    return [rec for rec in _read_lines(settings, day) if "stage" in rec]
