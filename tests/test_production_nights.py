"""Three nights of the real pipeline through the production-shaped stack (infra/stack.sh: PostgreSQL, the Airflow
scheduler with the LocalExecutor, the MLflow tracking server), against `c360 nightly` (the `airflow dags test` path)
for the same dates on a copy of the same landing zone.

Through the stack, `infra/stack.sh backfill` (make backfill-airflow) starts one c360_ingest run per date and
c360_transform / c360_score follow from the Asset events, one run per date; the first night trains (no champion).
What users see must be equal: the raw tables (load times left out), the marts, feature snapshots and scores, and
the exported files. MLflow runs and the registry's aliases must be in the server's PostgreSQL. Marked `production`
(make test-production): tens of minutes on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_nightly_end_to_end import CUSTOMERS, DAYS, ENV, SEED, START, export_files, user_tables
from tests.test_production_stack import STACK, Stack, _alive, _stack_pids, _wait, stack_env

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.timeout(3600)]

LAST = START + timedelta(days=DAYS - 1)
NIGHTS = [LAST - timedelta(days=2), LAST - timedelta(days=1), LAST]


# raw.* columns that legitimately differ between two loads of the same files: when a row was loaded, quarantined
# or scored, how long a file took, and the landed file's version (its mtime: the reference loads a copy)
RAW_RUN_METADATA = {"_loaded_at", "loaded_at", "quarantined_at", "scored_at", "seconds", "file_version"}


def raw_differences(a, b) -> tuple[dict[str, object], dict[str, int]]:
    """Compare every raw.* table of the warehouses of settings `a` and `b`, run metadata left out, as multisets.
    Returns (differences, rows per table of `a`): differences names the tables only one warehouse has and, per
    table, how many rows only `a` / only `b` hold with a few of them; it is empty when raw is equal."""
    import duckdb

    diff: dict[str, object] = {}
    with duckdb.connect() as con:
        for alias, settings in (("a", a), ("b", b)):
            path = str(settings.warehouse_path).replace("'", "''")
            con.execute(f"ATTACH '{path}' AS {alias} (READ_ONLY)")

        def tables(alias: str) -> set[str]:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'raw'"
            return {t for (t,) in con.execute(sql, [alias]).fetchall()}

        def columns(alias: str, table: str) -> list[str]:
            rows = con.execute(f"DESCRIBE {alias}.raw.{table}").fetchall()
            return [r[0] for r in rows if r[0] not in RAW_RUN_METADATA]

        ta, tb = tables("a"), tables("b")
        if ta != tb:
            diff["tables only in one"] = (sorted(ta - tb), sorted(tb - ta))
        rows = {}
        for table in sorted(ta & tb):
            cols = columns("a", table)
            if cols != columns("b", table):
                diff[table] = ("columns", cols, columns("b", table))
                continue
            select = ", ".join(f'"{c}"' for c in cols)
            only_a = f"SELECT {select} FROM a.raw.{table} EXCEPT ALL SELECT {select} FROM b.raw.{table}"
            only_b = f"SELECT {select} FROM b.raw.{table} EXCEPT ALL SELECT {select} FROM a.raw.{table}"
            n_a, n_b = (con.execute(f"SELECT count(*) FROM ({q})").fetchone()[0] for q in (only_a, only_b))
            if n_a or n_b:
                diff[table] = {
                    "only a": n_a,
                    "only b": n_b,
                    "sample a": con.execute(f"{only_a} LIMIT 3").fetchall(),
                    "sample b": con.execute(f"{only_b} LIMIT 3").fetchall(),
                }
            rows[table] = con.execute(f"SELECT count(*) FROM a.raw.{table}").fetchone()[0]
    return diff, rows


def settings_for(env: dict):
    import os

    from c360.config import get_settings

    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith(("C360_", "MLFLOW_", "AIRFLOW")) or key in (
                "LANDING_URI",
                "WAREHOUSE_PATH",
                "EXPORT_URI",
            ):
                mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        return get_settings()


def test_three_nights_through_the_scheduler_equal_make_nightly():
    base = Path(
        tempfile.mkdtemp(prefix="c360-nights-")
    )  # not under pytest's 0700 temp root (postgres reaches it)
    ports = {"pg": free_port(), "airflow": free_port(), "mlflow": free_port()}
    prod_env = stack_env(base / "prod", **ports)
    prod_env.update(ENV)
    # unpausing c360_ingest (catchup=False) also starts today's scheduled run, whose date never landed: fail it fast
    prod_env.update({"C360_LANDING_WAIT_SECONDS": "5", "C360_LANDING_POKE_SECONDS": "1"})
    ref_env = {
        k: v
        for k, v in prod_env.items()
        if not k.startswith("C360_") or k.startswith("C360_LANDING_") or k in ENV
    }
    ref_env.update({"C360_DATA_DIR": str(base / "ref"), "AIRFLOW_HOME": str(base / "ref" / "airflow")})

    gen = subprocess.run(
        [
            sys.executable,
            "-m",
            "c360.cli",
            "generate",
            "--customers",
            str(CUSTOMERS),
            "--days",
            str(DAYS),
            "--seed",
            str(SEED),
            "--start",
            START.isoformat(),
        ],
        env=prod_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert gen.returncode == 0, gen.stderr[-3000:]
    prod, ref = settings_for(prod_env), settings_for(ref_env)
    shutil.copytree(prod.landing_uri, ref.landing_uri)

    # the reference: make backfill (c360 nightly --from --to), airflow dags test on SQLite
    t0 = time.monotonic()
    nightly = subprocess.run(
        [
            sys.executable,
            "-m",
            "c360.cli",
            "nightly",
            "--from",
            NIGHTS[0].isoformat(),
            "--to",
            NIGHTS[-1].isoformat(),
        ],
        env=ref_env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    nightly_seconds = time.monotonic() - t0
    assert nightly.returncode == 0, nightly.stdout[-4000:] + nightly.stderr[-4000:]

    up = subprocess.run([STACK, "up"], env=prod_env, capture_output=True, text=True, timeout=600)
    s = Stack(
        prod_env, base / "prod", ports["airflow"], ports["mlflow"], ports["pg"], 0, base / "none", up.stdout
    )
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-4000:]
        _wait(
            "pipeline DAGs parsed",
            lambda: all(
                d in s.airflow("dags", "list") for d in ("c360_ingest", "c360_transform", "c360_score")
            ),
            300,
        )
        for dag_id in ("c360_score", "c360_transform", "c360_ingest"):
            s.airflow("dags", "unpause", dag_id)
        t0 = time.monotonic()
        s.run("backfill", NIGHTS[0].isoformat(), NIGHTS[-1].isoformat())

        def scored():
            runs = s.runs("c360_score")
            failed = [r for r in s.runs("c360_transform") + runs if r["state"] == "failed"]
            assert not failed, f"failed runs: {failed}; task logs in {prod.airflow_home}/logs"
            return runs if len(runs) >= len(NIGHTS) and all(r["state"] == "success" for r in runs) else None

        score_runs = _wait("c360_score for all three nights", scored, 3000, every=10)
        scheduler_seconds = time.monotonic() - t0
        ingest = [r for r in s.runs("c360_ingest") if r["run_id"].startswith("backfill__")]
        assert sorted(r["logical_date"][:10] for r in ingest) == [d.isoformat() for d in NIGHTS], ingest
        assert all(r["state"] == "success" for r in ingest), ingest
        assert len(score_runs) == len(NIGHTS), score_runs
        # the raw tables, scores, snapshots, marts and exports equal those of make nightly for the same dates
        raw_diff, raw_rows = raw_differences(prod, ref)
        assert not raw_diff, f"raw.* differs (a: the scheduler path, b: make nightly): {raw_diff}"
        assert min(raw_rows[t] for t in ("customers", "products", "transactions", "ingest_audit")) > 0, (
            raw_rows
        )
        assert user_tables(prod) == user_tables(ref)
        for day in NIGHTS:
            assert export_files(prod, day) == export_files(ref, day), day
        # the tracking server's PostgreSQL holds the runs and the champions
        import psycopg2

        with (
            psycopg2.connect(
                host="127.0.0.1", port=s.pg_port, user="c360", password="c360-local", dbname="mlflow"
            ) as db,
            db.cursor() as cur,
        ):
            cur.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'")
            assert cur.fetchone()[0] > 0
            cur.execute("SELECT name FROM registered_model_aliases WHERE alias = 'champion' ORDER BY name")
            champions = [r[0] for r in cur.fetchall()]
        assert len(champions) >= 3, champions
        print(
            f"three nights: scheduler path {scheduler_seconds:.0f} s (backfill create -> last score run), "
            f"c360 nightly {nightly_seconds:.0f} s; champions in PostgreSQL: {champions}"
        )
    finally:
        down = subprocess.run([STACK, "down"], env=prod_env, capture_output=True, text=True, timeout=300)
        left = {n: p for n, p in _stack_pids(base / "prod").items() if _alive(p)}
        assert down.returncode == 0 and not left, (down.stderr, left)
    shutil.rmtree(base, ignore_errors=True)
