"""The nightly job for one or more dates, run through real Airflow (`airflow dags test`, SQLite metadata): the
runner behind `c360 nightly` (whose command line, c360/cli/nightly.py, also generates a demo shop when the landing
zone is empty). The DAGs run in the order their Assets chain them; `airflow dags test` runs one DAG run in-process, so the
chain is walked here in that order, each run supervised by c360/pipeline/dagrun.py: one console line per task, the full
logs in files named on screen, a non-zero exit naming the task when a run fails or runs nothing, and SIGTERM /
SIGINT stopping the whole process tree.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import replace
from datetime import date

log = logging.getLogger(__name__)

# The nightly chain, upstream first (each DAG is scheduled on the previous one's Assets in production).
NIGHTLY_DAGS = ["c360_ingest", "c360_transform", "c360_score"]


def run_nights(days: list[date], dag_ids: list[str], settings, *, accept_volume: bool = False,
               stream: bool = False) -> int:
    """Run the chain for each date in order (each night builds on the previous one's state); the exit code of
    `c360 nightly`: 0 when every night succeeded, 1 at the first failed night, 128 + signal when stopped."""
    from c360.pipeline.airflow_env import ensure_airflow
    from c360.pipeline.dagrun import NightInterrupted

    ensure_airflow(settings)
    with _signals_stop_the_night():
        try:
            for day in days:  # in date order: each night builds on the previous one's state
                # the override reaches only the Airflow children of this night, never the caller's environment
                night = replace(settings, volume_override_date=day.isoformat()) if accept_volume else settings
                if not _run_night(day, dag_ids, night, stream):
                    return 1
        except NightInterrupted as exc:
            print(f"\nc360 nightly stopped by {exc}: the Airflow run and its children were stopped; the warehouse "
                  "keeps its last committed state. Rerun the date to finish it.", file=sys.stderr)
            return 128 + exc.signum
    return 0


def _run_night(day, dag_ids: list[str], settings, stream: bool) -> bool:
    """Run the chain for one date; True when every DAG run succeeded. On failure, the night's report is
    still written and the failure printed with its log and what to do."""
    from c360.pipeline.dagrun import DagRunFailed, NightInterrupted, run_dag
    from c360.pipeline.report.stages import mark_night_started
    from c360.pipeline.summary import print_nightly_summary

    night_started = time.monotonic()
    outcomes = []
    mark_night_started(settings, day, dag_ids)  # the report totals this run's stages only
    print(f"\n=== c360 nightly for {day}: {' -> '.join(dag_ids)} (full logs: "
          f"{settings.logs_dir / 'nightly' / day.isoformat()}/<dag>.log) ===", flush=True)
    try:
        for dag_id in dag_ids:
            outcome = run_dag(dag_id, day, settings, verbose=stream, echo=lambda line: print(line, flush=True))
            outcomes.append(outcome)
            problem = outcome.problem()
            if problem:
                raise DagRunFailed(outcome, problem)
    except DagRunFailed as exc:
        _record_failure(settings, day, exc.outcome)
        print(f"\nFAILED: {exc}", file=sys.stderr, flush=True)
        _write_report(settings, day)
        return False
    except NightInterrupted as exc:
        _record_failure(settings, day, None, interrupted=str(exc))
        raise
    print_nightly_summary(settings, day, outcomes, time.monotonic() - night_started)
    return True


def _record_failure(settings, day, outcome, interrupted: str | None = None) -> None:
    """Put the failed (or stopped) DAG run in the night's stage log, so the run report names it."""
    from c360.pipeline.report.stages import record_stage

    try:
        if outcome is None:
            record_stage(settings, day, "nightly", 0.0, "failed", error=f"stopped by {interrupted}")
            return
        failed = [t.task_id for t in outcome.failed] or [f"{t.task_id}={t.state}" for t in outcome.tasks.values()]
        problem = (outcome.problem() or "").splitlines()
        record_stage(settings, day, f"{outcome.dag_id} (DAG run)", outcome.seconds, "failed", dag_id=outcome.dag_id,
                     failed_tasks=failed, log=str(outcome.log_path),
                     error=f"{problem[0] if problem else 'failed'} Full log: {outcome.log_path}"[:500])
    except OSError as err:  # the console already says what failed; the record is a convenience
        log.warning("Could not record the failure in the stage log: %s", err)


def _write_report(settings, day) -> None:
    from c360.pipeline.report import build_report

    # the report logs each warning; the console already shows the failure, so keep them to the report
    report_log = logging.getLogger("c360.pipeline.report")
    level = report_log.level
    report_log.setLevel(logging.ERROR)
    try:
        paths = build_report(day, settings)
        print(f"  Run report (failed night): {paths.html}", file=sys.stderr)
    except Exception as err:  # noqa: BLE001 - the failure above is the news; a report problem must not hide it
        log.warning("Could not write the run report for %s: %s", day, err)
    finally:
        report_log.setLevel(level)


class _signals_stop_the_night:
    """SIGTERM and SIGINT raise NightInterrupted in the main thread (once: a second signal while the tree is
    being stopped is ignored, so the stop itself is not interrupted)."""

    def __enter__(self):
        from c360.pipeline.dagrun import NightInterrupted

        self.fired = False

        def handler(signum, frame):
            if self.fired:
                return
            self.fired = True
            raise NightInterrupted(signum)

        self.previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, h in self.previous.items():
            signal.signal(s, h)
        return False
