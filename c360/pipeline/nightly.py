"""`c360 nightly`: the nightly job for a date, run through real Airflow (`airflow dags test`, SQLite metadata).

On a fresh machine the landing zone is empty: a demo shop (20k customers over 400 days) is generated first.
The DAGs run in the order their Assets chain them; `airflow dags test` runs one DAG run in-process, so the
chain is walked here in that order, each run supervised by c360/pipeline/dagrun.py: one console line per task, the full
logs in files named on screen, a non-zero exit naming the task when a run fails or runs nothing, and SIGTERM /
SIGINT stopping the whole process tree.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import replace
from datetime import date, timedelta

from c360.config import get_settings
from c360.storage import open_storage

log = logging.getLogger(__name__)

# The nightly chain, upstream first (each DAG is scheduled on the previous one's Assets in production).
NIGHTLY_DAGS = ["c360_ingest", "c360_transform", "c360_score"]

DEMO = {"customers": 20_000, "days": 400, "seed": 42}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=date.fromisoformat, help="logical date (default: the latest landed transactions dt)")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, help="backfill: first date (with --to)")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, help="backfill: last date (with --from)")
    p.add_argument("--customers", type=int, default=DEMO["customers"], help="demo size if data must be generated")
    p.add_argument("--days", type=int, default=DEMO["days"], help="demo history if data must be generated")
    p.add_argument("--seed", type=int, default=DEMO["seed"])
    p.add_argument("--dags", nargs="+", default=NIGHTLY_DAGS, help="DAGs to run, in order")
    p.add_argument("--accept-volume", action="store_true",
                   help="do not hold this run's night(s) for volume (C360_VOLUME_OVERRIDE_DATE for each date run)")
    p.add_argument("-v", "--stream-logs", dest="stream_logs", action="store_true",
                   help="stream the full Airflow/dbt/Spark output (it always goes to data/logs/nightly/D/<dag>.log)")


def run(args: argparse.Namespace) -> int:
    from c360.ingest.landing import latest_partition
    from c360.pipeline.airflow_env import ensure_airflow
    from c360.pipeline.dagrun import NightInterrupted

    settings = get_settings()
    storage = open_storage(settings.landing_uri, settings.s3_endpoint_url)
    started = time.monotonic()
    if latest_partition(storage) is None:
        from c360dev.generate import generate

        log.info("Landing zone %s is empty: generating a demo shop (%s customers x %s days, seed %s)",
                 storage.uri, f"{args.customers:,}", args.days, args.seed)
        generate(out=storage, customers=args.customers, days=args.days, seed=args.seed,
                 truth_dir=settings.data_dir / "ground_truth")
    if bool(args.date_from) != bool(args.date_to):
        raise SystemExit("A backfill needs both --from and --to (make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD)")
    if args.date_from:
        if args.date_from > args.date_to:
            raise SystemExit(f"--from {args.date_from} is after --to {args.date_to}")
        days = [args.date_from + timedelta(days=i) for i in range((args.date_to - args.date_from).days + 1)]
    else:
        days = [args.date or latest_partition(storage)]
    ensure_airflow(settings)
    stream = bool(args.stream_logs or getattr(args, "verbose", False))
    with _signals_stop_the_night():
        try:
            for day in days:  # in date order: each night builds on the previous one's state
                # the override reaches only the Airflow children of this night, never the caller's environment
                night = replace(settings, volume_override_date=day.isoformat()) if args.accept_volume else settings
                if not _run_night(day, args.dags, night, stream):
                    return 1
        except NightInterrupted as exc:
            print(f"\nc360 nightly stopped by {exc}: the Airflow run and its children were stopped; the warehouse "
                  "keeps its last committed state. Rerun the date to finish it.", file=sys.stderr)
            return 128 + exc.signum
    if len(days) > 1:
        print(f"\nBackfill {days[0]} .. {days[-1]}: {len(days)} nights in {time.monotonic() - started:.0f} s")
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
