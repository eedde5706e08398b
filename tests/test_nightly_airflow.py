"""The nightly job through real Airflow (`airflow dags test`, SQLite metadata) on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

from c360.storage import LocalStorage

pytestmark = pytest.mark.integration

ORDERS = "customer_id,order_id,ordered_at,amount\nc1,o1,{d}T10:00:00Z,10\n,o2,{d}T11:00:00Z,5\n"


def run_c360(args, env):
    return subprocess.run([sys.executable, "-m", "c360.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def env(c360_env):
    return dict(os.environ)


def test_nightly_runs_ingestion_dag_and_summarises(c360_env, env):
    store = LocalStorage(c360_env.landing_uri)
    for d in ("2026-02-01", "2026-02-02"):
        store.write_bytes(f"transactions/dt={d}/orders.csv", ORDERS.format(d=d).encode())
    # ingestion and dbt only: two days of orders hold no labels to train the models the scoring DAG needs
    dags = ["--dags", "c360_ingest", "c360_transform"]
    proc = run_c360(["nightly", "--date", "2026-02-02", *dags], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "c360 nightly for 2026-02-02" in proc.stdout
    assert str(c360_env.warehouse_path) in proc.stdout
    con = duckdb.connect(str(c360_env.warehouse_path), read_only=True)
    assert con.execute("SELECT count(*) FROM raw.transactions").fetchone() == (2,)
    assert con.execute("SELECT reason, count(*) FROM raw.quarantine GROUP BY 1").fetchall() == [("missing_customer_id", 2)]
    con.close()

    # rerun: same rows, no duplicates
    assert run_c360(["nightly", "--date", "2026-02-02", *dags], env).returncode == 0
    con = duckdb.connect(str(c360_env.warehouse_path), read_only=True)
    assert con.execute("SELECT count(*) FROM raw.transactions").fetchone() == (2,)
    con.close()


def test_missing_partition_fails_the_dag_with_a_clear_message(c360_env, env):
    LocalStorage(c360_env.landing_uri).write_bytes("transactions/dt=2026-02-01/o.csv", ORDERS.format(d="2026-02-01").encode())
    proc = run_c360(["nightly", "--date", "2026-02-03"], env)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "No transactions files under" in out and "dt=2026-02-03" in out


def test_backfill_runs_each_date_in_order(c360_env, env):
    store = LocalStorage(c360_env.landing_uri)
    for d in ("2026-02-01", "2026-02-02", "2026-02-03"):
        store.write_bytes(f"transactions/dt={d}/orders.csv", ORDERS.format(d=d).encode())
    proc = run_c360(["nightly", "--from", "2026-02-02", "--to", "2026-02-03", "--dags", "c360_ingest"], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.index("nightly for 2026-02-02") < proc.stdout.index("nightly for 2026-02-03")
    assert "Backfill 2026-02-02 .. 2026-02-03: 2 nights" in proc.stdout
    con = duckdb.connect(str(c360_env.warehouse_path), read_only=True)
    assert con.execute("SELECT _run_date::VARCHAR, count(*) FROM raw.ingest_audit GROUP BY 1 ORDER BY 1").fetchall() == [
        ("2026-02-02", 2), ("2026-02-03", 1)]  # the first night also caught up on 02-01
    con.close()
