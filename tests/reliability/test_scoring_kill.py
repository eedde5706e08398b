"""SIGKILL mid-scoring (issue #13, Deliver 11): `python -m spark_jobs.score` killed with its whole process group
(driver and Spark JVM) while it writes a date's partitions. The scores and recommendations of that date from the
earlier successful run must stay exactly as they were (same files, same rows), no half partition may appear at the
final path, readers must ignore what the kill left, and a rerun must produce identical rows.

The tiny snapshot and the registered champions come from tests/test_spark_score.py (its module-scoped `env`
fixture, imported, not copied).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from c360.config import get_settings
from c360.pipeline.modeling import check_scored
from spark_jobs.score import score
from tests.test_spark_score import D, _rows, env  # noqa: F401  (env is the fixture this module uses)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("scores", "recommendations")


def partition(env_dir: Path, table: str) -> Path:
    return env_dir / "scores" / table / f"dt={D}"


def files_of(folder: Path) -> dict[str, str]:
    """Every file of a partition folder (hidden Spark checksums included) -> sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temps(env_dir: Path, table: str) -> set[Path]:
    return set((env_dir / "scores" / table).glob(f".dt={D}.tmp-*"))


def start_scoring(log_path: Path) -> subprocess.Popen:
    # own session: the driver and the JVM it starts share one process group, killed together like a lost host
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "spark_jobs.score", "--date", D], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group already ended
        os.killpg(proc.pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def first_run(env, spark):  # noqa: F811
    """The earlier successful run of D, in process."""
    assert score(D, spark=spark) == 0
    return env


def test_sigkill_mid_scoring_keeps_previous_partitions_and_rerun_is_identical(first_run, spark, tmp_path):
    env_dir = first_run
    # The latest point before the swap: the scores temp partition is complete and the recommendations one is
    # being written, so a job that published anything before its final swap would be caught here. (One point
    # only: each killed child costs a Spark start and a model load, a minute or more on a busy machine.)
    kill_during = "recommendations"
    before = {t: files_of(partition(env_dir, t)) for t in TABLES}
    before_rows = {t: _rows(partition(env_dir, t)) for t in TABLES}
    assert len(before_rows["scores"]) == 60 and len(before_rows["recommendations"]) > 0

    # Kill as soon as this run's temporary partition of `kill_during` appears: Spark is writing it. If the job
    # was too quick to be caught (it finished normally), its partitions are the new baseline and we try again.
    log = tmp_path / "score.log"
    for _attempt in range(3):
        old_temps = {t: temps(env_dir, t) for t in TABLES}
        proc = start_scoring(log)
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and not (temps(env_dir, kill_during) - old_temps[kill_during]):
                assert time.monotonic() < deadline, f"scoring neither wrote nor ended:\n{log.read_text()[-3000:]}"
                time.sleep(0.02)
            if proc.poll() is None:
                kill_group(proc)
                proc.wait(timeout=60)
                break
            assert proc.returncode == 0, log.read_text()[-3000:]
            before = {t: files_of(partition(env_dir, t)) for t in TABLES}
        finally:
            kill_group(proc)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "scoring always finished before it could be killed"
    deadline = time.monotonic() + 30
    while group_alive(proc.pid):  # the JVM is gone too: nothing writes behind our back
        assert time.monotonic() < deadline, "processes of the killed scoring job survive"
        time.sleep(0.1)

    # The previous partitions are intact: the very same files, bytes and rows; no half partition at the final path.
    for t in TABLES:
        assert files_of(partition(env_dir, t)) == before[t], f"{t}/dt={D} changed after the kill"
        pd.testing.assert_frame_equal(_rows(partition(env_dir, t)), before_rows[t])
    # it died with the scores already in their temp partition and the recommendations being written: unpublished
    assert all(temps(env_dir, t) - old_temps[t] for t in TABLES), "no temporary partitions: the kill came too late"
    assert not list((env_dir / "scores").glob(f"*/.dt={D}.old-*")), "the kill came during the swap"

    # Readers go by dt=D only (dbt's raw.scores views read `dt=*/`): exactly the previous rows, no leftover rows.
    day = date.fromisoformat(D)
    expected = {t: len(before_rows[t]) for t in TABLES}
    assert check_scored(day, get_settings()) == expected

    # A rerun succeeds and gives identical rows (run_id and scored_at are deterministic for D and the champions);
    # in process, on the shared session: the child above already showed the command line's own behaviour.
    assert score(D, spark=spark) == 0
    for t in TABLES:
        pd.testing.assert_frame_equal(_rows(partition(env_dir, t)), before_rows[t])
        # the rerun removed what the killed run left behind: only the published partition remains
        assert [p.name for p in (env_dir / "scores" / t).iterdir()] == [f"dt={D}"]
    assert check_scored(day, get_settings()) == expected
