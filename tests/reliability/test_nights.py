"""Nights end (issue #13 items 3, 4, 12; issue #12 item 0): a DAG run that executed nothing is a failure, a
deterministic task failure ends `c360 nightly` within seconds naming the task and its log, SIGTERM stops the
whole process tree and leaves the warehouse as the last committed run left it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import psutil
import pytest

from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

ORDERS = "customer_id,order_id,ordered_at,amount,currency\nc1,o1-{d},{d}T10:00:00Z,10,EUR\nc2,o2-{d},{d}T11:00:00Z,5,EUR\n"


def land(settings, *days: str) -> None:
    store = LocalStorage(settings.landing_uri)
    for d in days:
        store.write_bytes(f"transactions/dt={d}/orders.csv", ORDERS.format(d=d).encode())


def nightly(args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "c360.cli", "nightly", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def rows(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


# ------------------------------------------------------------------------------------------ unit level


def test_a_run_that_executed_no_task_is_a_problem_naming_dag_date_and_what_to_do(tmp_path):
    from c360.pipeline.dagrun import DagRunOutcome, TaskRun

    empty = DagRunOutcome("c360_ingest", date(1998, 6, 30), tmp_path / "x.log", run_state="success", returncode=0)
    problem = empty.problem()
    assert problem and "c360_ingest" in problem and "1998-06-30" in problem and "ran no task" in problem
    assert "start_date" in problem and str(tmp_path / "x.log") in problem

    ran = DagRunOutcome("c360_ingest", date(1998, 6, 30), tmp_path / "x.log", run_state="success", returncode=0,
                        tasks={"t": TaskRun("t", "success", 1, None, None)})
    assert ran.problem() is None
    ran.run_state = "failed"
    assert "did not succeed" in ran.problem()


def test_deterministic_errors_fail_at_once_and_transient_ones_keep_their_retries():
    from airflow.sdk.exceptions import AirflowFailException

    from c360.ingest.reconcile import ReconciliationError
    from c360.pipeline.tasks import fail_fast_on_deterministic_errors, is_deterministic
    from c360.pipeline.transform import DbtRunError, NodeResult, SnapshotMissing
    from c360.pipeline.warehouse import WarehouseLocked

    test_failure = DbtRunError(["build"], [NodeResult("test.c360.not_null_x", "fail", 0.1, "Got 1 result")])
    assert is_deterministic(test_failure)
    assert is_deterministic(ReconciliationError("landed 3 != loaded 2 + quarantined 0"))
    assert is_deterministic(SnapshotMissing("no rows"))
    assert is_deterministic(ValueError("segment 'x': unknown column"))
    assert not is_deterministic(WarehouseLocked("locked"))
    assert not is_deterministic(DbtRunError(["build"], [], "IO Error: Could not set lock on file"))
    assert not is_deterministic(RuntimeError("An error occurred (SlowDown) when calling PutObject"))
    assert not is_deterministic(ConnectionResetError("connection reset by peer"))

    @fail_fast_on_deterministic_errors
    def task(exc):
        raise exc

    with pytest.raises(AirflowFailException, match="not_null_x"):
        task(test_failure)
    with pytest.raises(WarehouseLocked):  # left to Airflow's retries
        task(WarehouseLocked("locked"))


def test_stage_records_name_the_airflow_task_that_wrote_them(c360_env):
    from types import SimpleNamespace

    from c360.pipeline.report.stages import read_stages
    from c360.pipeline.tasks import _stage, fail_fast_on_deterministic_errors

    @fail_fast_on_deterministic_errors
    def task(context):
        with _stage(date(2026, 2, 2), "dbt") as st:
            st.rows = 3

    task({"ti": SimpleNamespace(task_id="dbt_build")})
    assert [(r["stage"], r["task_id"], r["rows"]) for r in read_stages(c360_env, date(2026, 2, 2))] == [
        ("dbt", "dbt_build", 3)]


# ------------------------------------------------------------------------------------- through Airflow


@pytest.mark.timeout(600)
def test_a_night_in_1998_runs_its_tasks_and_one_before_1970_fails_loudly(c360_env):
    land(c360_env, "1998-06-29", "1998-06-30")
    proc = nightly(["--date", "1998-06-30", "--dags", "c360_ingest"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "c360_ingest.ingest_transactions" in proc.stdout and "success" in proc.stdout
    log_file = c360_env.logs_dir / "nightly" / "1998-06-30" / "c360_ingest.log"
    assert f"log: {log_file}" in proc.stdout and log_file.stat().st_size > 0
    assert len(proc.stdout.splitlines()) < 60  # a progress view, not Airflow's log
    assert rows(c360_env, "select count(*) from raw.transactions") == [(4,)]  # both days (first run: all history)

    # before the DAGs' start date Airflow creates no task instance and marks the run successful
    land(c360_env, "1969-12-31")
    proc = nightly(["--date", "1969-12-31", "--dags", "c360_ingest"])
    assert proc.returncode != 0
    assert "c360_ingest for 1969-12-31: Airflow ran no task" in proc.stderr
    assert "start_date" in proc.stderr


@pytest.mark.timeout(900)
def test_a_deterministic_task_failure_ends_the_night_within_seconds_naming_task_and_log(c360_env):
    # the transform DAG on a warehouse that ingestion never filled: dbt builds empty models, then the feature
    # export finds no snapshot for the date, which no retry can change (it used to wait 5 min for one)
    land(c360_env, "2026-02-02")
    p = subprocess.Popen([sys.executable, "-m", "c360.cli", "nightly", "--date", "2026-02-02", "--dags",
                          "c360_transform"], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    failed_at = None
    out = []
    for line in p.stdout:
        out.append(line)
        if "export_features" in line and "failed" in line and failed_at is None:
            failed_at = time.monotonic()
    p.wait(timeout=120)
    ended = time.monotonic()
    err = p.stderr.read()
    assert failed_at is not None, "".join(out) + err
    assert ended - failed_at < 30, f"the night went on {ended - failed_at:.0f} s after the task failed"
    assert p.returncode == 1
    assert not any("retry" in line for line in out), "".join(out)  # failed at once, no retry
    log_file = c360_env.logs_dir / "nightly" / "2026-02-02" / "c360_transform.log"
    assert "task export_features failed" in err and str(log_file) in err and "has no rows" in err
    # the failed night still has its report, naming the failed step
    report = c360_env.reports_dir / "2026-02-02.json"
    assert report.exists()
    facts = __import__("json").loads(report.read_text())
    assert any("export_features" in w or "feature export" in w for w in facts["warnings"])
    # its summary (docs/report.md) opens with the failure: the failed steps first, each with an error and a runbook
    summary = facts["summary"]
    assert summary["status"] == "failed" and summary["headline"].startswith("The night of 2026-02-02 FAILED")
    first = summary["run"]["stages"][0]
    assert first["status"] == "failed" and first["error"] and first["runbook"].startswith("docs/runbooks.md#")
    assert any("feature export" in f["stage"] or "export_features" in f["error"]
               for f in summary["run"]["stages"] if f["status"] == "failed")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(1200)
def test_sigterm_stops_the_whole_tree_and_an_immediate_rerun_succeeds(c360_env):
    land(c360_env, "2026-02-01", "2026-02-02")
    dags = ["--dags", "c360_ingest", "c360_transform"]
    first = nightly(["--date", "2026-02-01", *dags])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = rows(c360_env, "select as_of_date, customer_id, orders_count from feature_store.customer_features "
                            "where as_of_date = '2026-02-01' order by all")
    assert before

    p = subprocess.Popen([sys.executable, "-m", "c360.cli", "nightly", "--date", "2026-02-02", *dags],
                         env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[int, psutil.Process] = {}
    log_file = c360_env.logs_dir / "nightly" / "2026-02-02" / "c360_transform.log"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait until dbt is running against the warehouse
        for proc in _tree(p.pid):
            seen[proc.pid] = proc
        if log_file.exists() and "START sql" in log_file.read_text(errors="replace"):
            break  # dbt is building models in the warehouse
        assert p.poll() is None, p.stdout.read()
        time.sleep(0.2)
    for proc in _tree(p.pid):
        seen[proc.pid] = proc
    assert len(seen) >= 2, "the airflow child was never seen"
    p.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, _ = p.communicate(timeout=120)
    print(f"c360 nightly ended {time.monotonic() - signalled:.1f} s after SIGTERM")
    assert p.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "stopped by SIGTERM" in out
    # it was stopped mid-build: dbt was interrupted and the DAG run did not succeed
    interrupted = log_file.read_text(errors="replace")
    assert "KeyboardInterrupt" in interrupted and "Completed successfully" not in interrupted, interrupted[-3000:]
    assert "state=success" not in interrupted
    survivors = [proc for proc in seen.values() if _alive(proc)]
    assert not survivors, f"still running after c360 nightly ended: {[s.cmdline() for s in survivors]}"

    # the warehouse is not locked and the interrupted date reruns cleanly; the previous night is intact
    rerun = nightly(["--date", "2026-02-02", *dags])
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "WarehouseLocked" not in rerun.stdout + rerun.stderr
    assert rows(c360_env, "select as_of_date, customer_id, orders_count from feature_store.customer_features "
                          "where as_of_date = '2026-02-01' order by all") == before
    assert rows(c360_env, "select count(*), count(distinct order_id) from raw.transactions") == [(4, 4)]


def test_the_lock_error_names_the_full_holder_path_and_pid_and_what_to_do(c360_env):
    from c360.pipeline.warehouse import WarehouseLocked, connect

    c360_env.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(c360_env.warehouse_path)).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(c360_env.warehouse_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseLocked) as err:
            connect(c360_env)
    finally:
        holder.kill()
        holder.wait()
    message = str(err.value)
    # the interpreter's path has dots (python3.11): it used to be cut at the first one
    assert f"PID {holder.pid} ({os.path.realpath(sys.executable)})" in message, message
    assert f"kill {holder.pid}" in message and str(c360_env.warehouse_path) in message


def test_the_console_summary_says_when_exports_were_held_and_why(c360_env, capsys):
    from c360.pipeline.dagrun import DagRunOutcome, TaskRun
    from c360.pipeline.summary import print_nightly_summary

    day = date(2026, 2, 2)
    outcome = DagRunOutcome("c360_score", day, c360_env.logs_dir / "x.log", run_state="success", returncode=0,
                            tasks={"export": TaskRun("export", "skipped", 1, None, None,
                                                     note="PSI of churn_probability 0.41 >= hold 0.25")})
    print_nightly_summary(c360_env, day, [outcome], 12.0)
    out = capsys.readouterr().out
    assert "EXPORTS HELD for 2026-02-02" in out and "PSI of churn_probability 0.41 >= hold 0.25" in out
    assert "c360 segments export --date 2026-02-02 --force" in out


def test_progress_lines_carry_each_tasks_rows_and_skip_note_from_the_stage_log(c360_env):
    from datetime import UTC, datetime, timedelta

    from c360.pipeline.dagrun import DagRunOutcome, TaskRun, _merge, _StageTail
    from c360.pipeline.report.stages import record_stage, stage_log_path

    day = date(2026, 2, 2)
    tail = _StageTail(stage_log_path(c360_env, day))
    now = datetime.now(UTC)
    # within the same second: paired by the task id the records carry, not by time
    record_stage(c360_env, day, "ingest transactions", 1.0, "success", rows=1234, task_id="ingest_transactions")
    record_stage(c360_env, day, "export", 0.0, "skipped", note="drift says hold", task_id="export")
    tasks = {"ingest_transactions": TaskRun("ingest_transactions", "success", 1, now - timedelta(seconds=1), now),
             "export": TaskRun("export", "skipped", 1, now, now + timedelta(seconds=0.5))}
    lines: list[str] = []
    outcome = DagRunOutcome("c360_x", day, c360_env.logs_dir / "x.log")
    _merge(outcome, tasks, tail, {}, lines.append)
    assert len(lines) == 2
    assert "c360_x.ingest_transactions" in lines[0] and "success" in lines[0] and "1,234 rows" in lines[0]
    assert "c360_x.export" in lines[1] and "skipped" in lines[1] and "drift says hold" in lines[1]
    _merge(outcome, dict(tasks), tail, {"ingest_transactions": ("success", 1), "export": ("skipped", 1)},
           lines.append)
    assert len(lines) == 2  # one line per state and attempt


@pytest.mark.timeout(300)
def test_a_sigkilled_nightly_leaves_no_orphaned_airflow_run(c360_env, monkeypatch):
    # nothing landed for the date: the child's sensor would wait 10 minutes for it
    land(c360_env, "2026-02-01")
    monkeypatch.setenv("C360_LANDING_WAIT_SECONDS", "600")
    p = subprocess.Popen([sys.executable, "-m", "c360.cli", "nightly", "--date", "2026-02-02", "--dags",
                          "c360_ingest"], env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and not children:
        children = [c for c in _tree(p.pid)[1:] if "dags test" in " ".join(c.cmdline())]
        time.sleep(0.2)
    assert children, "the airflow child never started"
    p.kill()  # no chance to stop its child: the kernel must (PR_SET_PDEATHSIG)
    p.wait()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not [c for c in alive if _alive(c)], "airflow dags test survived its parent"


# ----------------------------------------------------------------------------- the supervisor with a fake Airflow
# Cheap versions of the two tests above (seconds, no Airflow, dbt or Spark): the real `c360 nightly` supervisor
# (run_nights -> run_dag -> stop_process_tree) around a fake `airflow dags test` child, tests/reliability/_fake_night.py.

FAKE_NIGHT = os.path.join(os.path.dirname(__file__), "_fake_night.py")


@pytest.fixture
def fake_night(tmp_path):
    """Starts the fake night; afterwards kills whatever of it a failed test left running."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(mode: str, **env) -> tuple[subprocess.Popen, Path]:
        pids = tmp_path / "fake" / "pids"
        pids.parent.mkdir()
        pids.touch()
        proc = subprocess.Popen([sys.executable, FAKE_NIGHT, "night", "2026-02-02"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "C360_FAKE_MODE": mode, "C360_FAKE_PIDS": str(pids), **env})
        started.append((proc, pids))
        return proc, pids

    yield start
    for proc, pids in started:
        for pid in [proc.pid, *_pids(pids)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        proc.wait(timeout=10)


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def test_a_failed_task_whose_child_loops_on_no_tasks_to_run_ends_the_night_naming_it(c360_env, fake_night):
    from c360.pipeline.dagrun import FAILED_SETTLE_SECONDS

    assert FAILED_SETTLE_SECONDS <= 30  # "within seconds" of the failure, in production too
    started = time.monotonic()
    proc, pids = fake_night("loop", C360_FAKE_SETTLE="2")
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    print(f"the looping night ended after {took:.1f} s")
    assert proc.returncode == 1, out + err
    assert took < 2 + 20, f"the night took {took:.0f} s"  # the settle time + start-up and report, not forever
    log_file = c360_env.logs_dir / "nightly" / "2026-02-02" / "c360_transform.log"
    assert log_file.read_text().count("No tasks to run. unrunnable tasks") >= 3  # the child did loop
    assert "c360_transform for 2026-02-02 failed: task dbt_build failed (a task failed and Airflow did not end " \
           "the run)" in err, err
    assert "dbt_build: DbtRunError: dbt test not_null_int_order_lines_amount_eur failed" in err
    assert f"Full log: {log_file}" in err
    [child] = _pids(pids)
    assert not _alive_pid(child), "the looping airflow child survived"


def _alive_pid(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_whole_tree_of_a_fake_night(c360_env, fake_night, sig):
    proc, pids = fake_night("tree", C360_NIGHTLY_STOP_GRACE_SECONDS="2")
    deadline = time.monotonic() + 60
    while len(_pids(pids)) < 3:  # the airflow child, its dbt and its Spark JVM (in its own session)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    tree = [psutil.Process(p) for p in _pids(pids)]
    time.sleep(0.5)  # the supervisor is in its polling loop
    proc.send_signal(sig)
    signalled = time.monotonic()
    out, err = proc.communicate(timeout=60)
    print(f"{sig.name}: the fake night ended {time.monotonic() - signalled:.1f} s after the signal")
    assert proc.returncode == 128 + sig, out + err
    assert f"c360 nightly stopped by {sig.name}" in err
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not [p for p in alive if _alive(p)], f"still running after {sig.name}: {[p.pid for p in alive]}"
