"""Run one DAG for one logical date through `airflow dags test`, supervised, so that a night always ends.

The child runs in its own session (process group) with its whole output in a log file; this process reads the
run's task-instance states from Airflow's metadata DB once a second to print one line per finished task, to
stop the child when a task has failed for good (or the run stalls, or a timeout passes), and to refuse a run
that executed no task. A signal stops the whole tree (Airflow child, dbt, Spark JVM): SIGTERM, a bounded
grace, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from c360.config import Settings

log = logging.getLogger(__name__)

# states in which a task instance has run (or is running) in this invocation
RAN_STATES = {"success", "failed", "skipped", "up_for_retry", "up_for_reschedule", "running", "deferred"}
# states in which `airflow dags test` is still making progress on its own
WAITING_STATES = {"running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "deferred", "restarting",
                  "awaiting_input"}
# states worth a progress line
REPORTED_STATES = {"success", "failed", "skipped", "upstream_failed", "up_for_retry"}
# after a task failed for good, Airflow marks the rest upstream_failed and ends the run within a second or two;
# past this, the child is stopped (it would otherwise log "No tasks to run" forever)
FAILED_SETTLE_SECONDS = 15.0
# no task running, none waiting for a retry, yet the run is not over: stalled
STALL_SECONDS = 60.0


class NightInterrupted(BaseException):
    """SIGTERM / SIGINT reached `c360 nightly`; raised in the main thread so every layer can clean up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class TaskRun:
    task_id: str
    state: str | None
    try_number: int
    start: datetime | None
    end: datetime | None
    rows: int | None = None
    note: str | None = None
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        if self.start and self.end:
            return max(0.0, (self.end - self.start).total_seconds())
        return None


@dataclass
class DagRunOutcome:
    dag_id: str
    day: date
    log_path: Path
    run_state: str | None = None
    returncode: int | None = None
    seconds: float = 0.0
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    stopped: str | None = None  # why this process stopped the child, if it did
    # stage-log records not yet matched to a finished task
    pending_records: list[dict] = field(default_factory=list, repr=False)

    @property
    def executed(self) -> list[TaskRun]:
        return [t for t in self.tasks.values() if t.state in RAN_STATES]

    @property
    def failed(self) -> list[TaskRun]:
        return [t for t in self.tasks.values() if t.state in ("failed", "up_for_retry")]

    @property
    def notes(self) -> list[str]:
        return [f"{t.task_id}: {t.note}" for t in self.tasks.values() if t.note]

    def problem(self) -> str | None:
        """None for a good run; otherwise what went wrong, the log to read and what to do."""
        where = f"{self.dag_id} for {self.day}"
        rerun = f"c360 nightly --date {self.day} (make nightly DATE={self.day})"
        if self.failed:
            lines = [f"{where} failed: task {', '.join(t.task_id for t in self.failed)} failed"
                     + (f" ({self.stopped})" if self.stopped else "") + "."]
            for t in self.failed:
                if t.error:
                    lines.append(f"  {t.task_id}: {t.error}")
            lines.append(f"  Full log: {self.log_path}")
            lines.append(f"  Fix the cause named above, then rerun: {rerun}")
            return "\n".join(lines)
        if self.stopped:
            return (f"{where} was stopped: {self.stopped}. Tasks: "
                    f"{', '.join(f'{t.task_id}={t.state}' for t in self.tasks.values()) or 'none'}.\n"
                    f"  Full log: {self.log_path}\n  Then rerun: {rerun}")
        if not self.executed:
            return (f"{where}: Airflow ran no task (DAG run state {self.run_state!r}, "
                    f"{len(self.tasks)} task instance(s), none executed). A run that did nothing is not a success.\n"
                    f"  Check that the DAG's start_date (c360/pipeline/assets.py DAG_START_DATE) is before {self.day} and that "
                    f"the DAG parses (`airflow dags list-import-errors`).\n  Full log: {self.log_path}")
        if self.run_state != "success" or self.returncode not in (0, None):
            return (f"{where} did not succeed: DAG run state {self.run_state!r}, `airflow dags test` exit code "
                    f"{self.returncode}. Tasks: {', '.join(f'{t.task_id}={t.state}' for t in self.tasks.values())}.\n"
                    f"  Full log: {self.log_path}\n  Fix the cause, then rerun: {rerun}")
        return None


class DagRunFailed(RuntimeError):
    def __init__(self, outcome: DagRunOutcome, message: str):
        super().__init__(message)
        self.outcome = outcome


def nightly_log_path(settings: Settings, day: date, dag_id: str) -> Path:
    return Path(settings.logs_dir) / "nightly" / day.isoformat() / f"{dag_id}.log"


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class MetadataDB:
    """Read-only look at Airflow's metadata DB (SQLite here, PostgreSQL at scale) through SQLAlchemy Core:
    the dag_run / task_instance columns read here are stable across Airflow 2 and 3."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.dag_run = sa.table("dag_run", sa.column("dag_id"), sa.column("run_id"), sa.column("state"),
                                sa.column("logical_date", sa.DateTime()))
        self.ti = sa.table("task_instance", sa.column("dag_id"), sa.column("run_id"), sa.column("task_id"),
                           sa.column("state"), sa.column("try_number"), sa.column("start_date"),
                           sa.column("end_date"), sa.column("updated_at"))

    def read(self, dag_id: str, day: date, since: datetime) -> tuple[str | None, dict[str, TaskRun]]:
        """The run's state and its task instances touched since `since` (older ones belong to an earlier run)."""
        sa = self._sa
        logical = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if self.engine.dialect.name == "sqlite":  # Airflow stores naive UTC there
            logical = logical.replace(tzinfo=None)
        with self.engine.connect() as con:
            row = con.execute(sa.select(self.dag_run.c.run_id, self.dag_run.c.state).where(
                self.dag_run.c.dag_id == dag_id, self.dag_run.c.logical_date == logical)).first()
            if row is None:
                return None, {}
            tis = con.execute(sa.select(self.ti.c.task_id, self.ti.c.state, self.ti.c.try_number,
                                        self.ti.c.start_date, self.ti.c.end_date, self.ti.c.updated_at).where(
                self.ti.c.dag_id == dag_id, self.ti.c.run_id == row.run_id)).all()
        tasks = {}
        for t in tis:
            updated = _as_utc(t.updated_at)
            if updated is None or updated < since:
                continue
            tasks[t.task_id] = TaskRun(t.task_id, t.state, int(t.try_number or 0), _as_utc(t.start_date),
                                       _as_utc(t.end_date))
        return row.state, tasks


class _StageTail:
    """New records of the night's stage log (c360/pipeline/report/stages.py) since the last read: each task appends its
    stage there (rows, skipped note, error), and `airflow dags test` runs one task at a time."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read_new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a half-written last line is read next time
        self.offset += end
        out = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out


def _attach_stage_records(task: TaskRun, records: list[dict]) -> None:
    for rec in records:
        if rec.get("rows") is not None:
            task.rows = (task.rows or 0) + int(rec["rows"])
        if rec.get("status") == "skipped" and rec.get("note"):
            task.note = str(rec["note"])
        if rec.get("status") == "failed" and rec.get("error"):
            task.error = str(rec["error"])


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Failed|Missing|Locked|Interrupted)\w*: ")


def _last_error_line(log_path: Path) -> str | None:
    """The last exception in the child's log (a traceback's final line and its continuation lines): the cause
    when the task recorded none in the stage log."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 400_000))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for i in range(len(lines) - 1, -1, -1):
        if EXCEPTION_LINE.match(lines[i]):
            out = [lines[i]]
            for nxt in lines[i + 1:i + 6]:  # a multi-line message, up to the next log record
                if not nxt.strip() or re.match(r"^\d{4}-\d\d-\d\dT|^\[|^Traceback", nxt):
                    break
                out.append(nxt)
            return "\n".join(out)[:800]
    return None


def format_task_line(dag_id: str, task: TaskRun) -> str:
    rows = f"{task.rows:,} rows" if task.rows is not None else ""
    secs = f"{task.seconds:6.1f} s" if task.seconds is not None else ""
    state = task.state or "?"
    if state == "up_for_retry":
        state = f"failed, retry {task.try_number}"
    line = f"  {dag_id + '.' + task.task_id:<42} {state:<16} {rows:>15} {secs:>9}"
    if task.note:
        line += f"   ({task.note})"
    elif task.error and task.state in ("failed", "up_for_retry"):
        line += f"\n      {task.error[:300]}"
    return line.rstrip()


def _tail_to_console(path: Path, stop: threading.Event) -> None:
    """-v: stream the child's log to the terminal as it grows."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        while True:
            chunk = f.read()
            if chunk:
                os.write(1, chunk)
            elif stop.is_set():
                return
            else:
                time.sleep(0.2)


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, be SIGKILLed if `c360 nightly` itself dies without a chance to stop
    it (SIGKILL, the OOM killer), so no orphaned run goes on writing the warehouse. DuckDB keeps what was
    committed; the Spark JVM exits when its Python parent's pipe closes."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a stop by signal still works; only a SIGKILLed parent leaves the run going


def stop_process_tree(proc: subprocess.Popen, grace_seconds: float) -> None:
    """Stop `airflow dags test` and everything it started, then wait (bounded) for them to end.

    SIGINT to the Airflow child: its in-process task runner answers SIGTERM only by calling the operator's
    on_kill() (a no-op for Python tasks, so dbt would run on), while SIGINT raises KeyboardInterrupt in the
    task: dbt cancels its queries and DuckDB rolls the open transaction back. SIGTERM to the rest of the process
    group (a Spark job's Python driver and JVM, which ignore SIGINT) and to descendants that left the group.
    Whatever is still alive after `grace_seconds` is SIGKILLed (DuckDB's WAL keeps committed work either way).
    """
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    for p in tree[1:]:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=grace_seconds) if tree else ([], [])
    if alive or proc.poll() is None:
        log.warning("Killing %d process(es) still alive %.0f s after being asked to stop", len(alive),
                    grace_seconds)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_dag(dag_id: str, day: date, settings: Settings, *, verbose: bool = False,
            echo: Callable[[str], None] = print) -> DagRunOutcome:
    """`airflow dags test dag_id day`, supervised. Returns the outcome; never hangs past the timeout.
    A NightInterrupted raised while it runs stops the child's whole tree before propagating."""
    from c360.pipeline.airflow_env import airflow_bin, airflow_env
    from c360.pipeline.report.stages import stage_log_path

    env = airflow_env(settings)
    env["PYTHONUNBUFFERED"] = "1"  # the log file (and -v) follow the run as it happens, not in 8 kB chunks
    db = MetadataDB(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    log_path = nightly_log_path(settings, day, dag_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = DagRunOutcome(dag_id, day, log_path)
    stages = _StageTail(stage_log_path(settings, day))
    since = datetime.now(UTC) - timedelta(seconds=1)
    started = time.monotonic()
    with open(log_path, "ab") as logf:
        logf.write(f"\n===== {datetime.now(UTC).isoformat(timespec='seconds')} airflow dags test {dag_id} {day}\n"
                   .encode())
        logf.flush()
        # own session: a terminal's Ctrl-C reaches only this process, which stops the tree in order; and the
        # tree can be signalled as one group
        proc = subprocess.Popen([airflow_bin(), "dags", "test", dag_id, day.isoformat()], env=env,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent)
    tail_stop = threading.Event()
    if verbose:
        threading.Thread(target=_tail_to_console, args=(log_path, tail_stop), daemon=True).start()
    reported: dict[str, tuple] = {}
    failed_since = stalled_since = None
    try:
        while True:
            rc = proc.poll()
            try:
                outcome.run_state, tasks = db.read(dag_id, day, since)
            except Exception as exc:  # noqa: BLE001 - a busy SQLite file: read again next second
                log.debug("metadata read failed: %s", exc)
                tasks = outcome.tasks
            _merge(outcome, tasks, stages, reported, echo)
            now = time.monotonic()
            if rc is not None:
                outcome.returncode = rc
                break
            if any(t.state == "failed" for t in tasks.values()):
                failed_since = failed_since or now
                if now - failed_since > FAILED_SETTLE_SECONDS:
                    outcome.stopped = "a task failed and Airflow did not end the run"
            if tasks and not any(t.state in WAITING_STATES for t in tasks.values()) and \
                    any(t.state not in ("success", "failed", "skipped", "upstream_failed", "removed")
                        for t in tasks.values()):
                stalled_since = stalled_since or now
                if now - stalled_since > STALL_SECONDS:
                    outcome.stopped = (f"no task could run for {STALL_SECONDS:.0f} s: "
                                       + ", ".join(f"{t.task_id}={t.state}" for t in tasks.values()))
            else:
                stalled_since = None
            if now - started > settings.nightly_dag_timeout_seconds:
                outcome.stopped = (f"it ran longer than C360_NIGHTLY_DAG_TIMEOUT_SECONDS="
                                   f"{settings.nightly_dag_timeout_seconds}")
            if outcome.stopped:
                stop_process_tree(proc, settings.nightly_stop_grace_seconds)
                outcome.returncode = proc.returncode
                break
            time.sleep(1.0)
    except NightInterrupted as exc:
        outcome.stopped = f"{exc} received"
        stop_process_tree(proc, settings.nightly_stop_grace_seconds)
        outcome.returncode = proc.returncode
        raise
    finally:
        tail_stop.set()
        outcome.seconds = time.monotonic() - started
        try:
            outcome.run_state, tasks = db.read(dag_id, day, since)
            _merge(outcome, tasks, stages, reported, echo)
        except Exception as exc:  # noqa: BLE001 - the outcome keeps the last states seen
            log.debug("final metadata read failed: %s", exc)
        for t in outcome.failed:
            t.error = t.error or _last_error_line(log_path)
        db.engine.dispose()
    return outcome


def _merge(outcome: DagRunOutcome, tasks: dict[str, TaskRun], stages: _StageTail, reported: dict,
           echo: Callable[[str], None]) -> None:
    """Carry rows/notes over from earlier reads, attach the stage records written during a task that just
    finished, and print one line per task state worth reporting (once per state and attempt)."""
    pending = outcome.pending_records
    pending.extend(stages.read_new())
    for task_id, t in sorted(tasks.items(), key=lambda kv: kv[1].end or datetime.max.replace(tzinfo=UTC)):
        prev = outcome.tasks.get(task_id)
        if prev:
            t.rows, t.note, t.error = prev.rows, prev.note, prev.error
        key = (t.state, t.try_number)
        if t.state in REPORTED_STATES and reported.get(task_id) != key:
            # records name their task (c360/pipeline/tasks.py); older ones are paired by time, one task running at a time
            mine = [r for r in pending if r.get("task_id") == task_id]
            if not mine and t.start and t.end:
                lo, hi = t.start - timedelta(seconds=1), t.end + timedelta(seconds=2)
                mine = [r for r in pending if not r.get("task_id")
                        and lo <= (_as_utc(r.get("recorded_at")) or lo - timedelta(1)) <= hi]
            _attach_stage_records(t, mine)
            pending[:] = [r for r in pending if r not in mine]
            reported[task_id] = key
            echo(format_task_line(outcome.dag_id, t))
    outcome.tasks.update(tasks)
