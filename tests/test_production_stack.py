"""The production-shaped stack of infra/stack.sh (make up): PostgreSQL, the Airflow scheduler, dag-processor,
triggerer and api-server with the LocalExecutor, and the MLflow tracking server, on a fresh data dir.

What production relies on, run for real: every service healthy and reachable on 127.0.0.1 only; MLflow runs and
registry aliases stored in the server's PostgreSQL; a task that fails because S3 is unreachable is retried by the
scheduler and succeeds once S3 is back; `airflow backfill create` over three dates makes one run per date, in date
order, and each date starts its own Asset-scheduled downstream run; `make down` cleans up after a failed `make up`.
The DAGs are the probes of tests/production_dags (the pipeline's schedule helpers and task functions, not its work).

Marked `production` (left out of `make test`, which stays quick enough; `make test-production` runs them): the
stack takes about a minute to come up on this machine, the module about 4-6 minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.production, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
STACK = str(ROOT / "infra" / "stack.sh")
BUCKET = "c360-stack-landing"


@dataclass
class Stack:
    env: dict[str, str]
    data: Path
    airflow_port: int
    mlflow_port: int
    pg_port: int
    s3_port: int
    probe_log: Path
    up_output: str

    def run(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([STACK, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, (
                f"infra/stack.sh {' '.join(args)}: {proc.stdout[-1500:]}{proc.stderr[-2500:]}"
            )
        return proc

    def airflow(self, *args: str) -> str:
        return self.run("airflow", *args).stdout

    def runs(self, dag_id: str) -> list[dict]:
        out = self.airflow("dags", "list-runs", dag_id, "-o", "json")
        # log lines may precede the JSON
        return next((json.loads(line) for line in out.splitlines() if line.startswith("[")), [])

    def probe_lines(self) -> list[str]:
        return self.probe_log.read_text().splitlines() if self.probe_log.exists() else []


def stack_env(data: Path, **ports: int) -> dict[str, str]:
    """The test process's environment without its own pipeline/Airflow/MLflow settings (conftest points
    AIRFLOW_HOME at a temp dir), plus the stack's: fresh data dir, free ports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "C360_", "MLFLOW_"))
        and k not in ("LANDING_URI", "WAREHOUSE_PATH", "EXPORT_URI")
    }
    env.update(
        {
            "C360_DATA_DIR": str(data),
            "C360_PG_PORT": str(ports["pg"]),
            "C360_AIRFLOW_PORT": str(ports["airflow"]),
            "C360_MLFLOW_PORT": str(ports["mlflow"]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def _wait(what: str, predicate, timeout: float, stack: Stack | None = None, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    detail = f"\nprobe log: {stack.probe_lines()}" if stack else ""
    pytest.fail(f"{what} not within {timeout:.0f} s{detail}")


def _stack_pids(data: Path) -> dict[str, int]:
    """Service name -> pid (also its process group: stack.sh starts each in its own session)."""
    run = data / "run"
    pids = {p.stem: int(p.read_text()) for p in run.glob("*.pid")}
    postmaster = data / "postgres" / "postmaster.pid"
    if postmaster.exists():
        pids["postgresql"] = int(postmaster.read_text().split()[0])
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def stack():
    # not under pytest's temp root: pytest resets it to 0700 on every session, and the postgres user must reach
    # its data dir through every parent folder
    base = Path(tempfile.mkdtemp(prefix="c360-stack-"))
    data = base / "data"
    ports = {"pg": free_port(), "airflow": free_port(), "mlflow": free_port()}
    s3_port = free_port()
    env = stack_env(data, **ports)
    env.update(
        {
            "C360_STACK_DAGS_FOLDER": str(ROOT / "tests" / "production_dags"),
            "C360_PROBE_LOG": str(base / "probe.log"),
            # a test does not wait for the default polling intervals
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # the landing zone is on S3 (moto), which is down until the retry test brings it up
            "LANDING_URI": f"s3://{BUCKET}/landing",
            "C360_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "C360_S3_MAX_ATTEMPTS": "1",
            "C360_S3_CONNECT_TIMEOUT_SECONDS": "2",
        }
    )
    t0 = time.monotonic()
    up = subprocess.run([STACK, "up"], env=env, capture_output=True, text=True, timeout=600)
    s = Stack(
        env, data, ports["airflow"], ports["mlflow"], ports["pg"], s3_port, base / "probe.log", up.stdout
    )
    try:
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-2000:]}\n{up.stderr[-4000:]}"
        print(f"stack healthy {time.monotonic() - t0:.1f} s after up; {up.stdout.strip().splitlines()[-1]}")
        wanted = {"probe_nightly", "probe_transform", "probe_retry"}
        _wait(
            "probe DAGs parsed",
            lambda: (
                wanted
                <= {
                    d["dag_id"]
                    for d in json.loads(
                        next(
                            (
                                ln
                                for ln in s.airflow("dags", "list", "-o", "json").splitlines()
                                if ln.startswith("[")
                            ),
                            "[]",
                        )
                    )
                }
            ),
            240,
        )
        yield s
    finally:
        down = subprocess.run([STACK, "down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr
        left = {name: pid for name, pid in _stack_pids(data).items() if _alive(pid)}
        assert not left, f"still running after down: {left}"
        shutil.rmtree(base, ignore_errors=True)


def test_stack_is_healthy_and_listens_on_loopback_only(stack):
    import psutil

    out = stack.up_output
    assert f"Airflow UI  http://127.0.0.1:{stack.airflow_port}" in out, out
    assert f"MLflow UI   http://127.0.0.1:{stack.mlflow_port}" in out, out
    assert "all services healthy" in out, out
    status = stack.run("status")
    for line in (
        "scheduler: running",
        "dag-processor: running",
        "triggerer: running",
        "api-server: running",
        "mlflow: running",
        f"postgresql: running on 127.0.0.1:{stack.pg_port}",
        "airflow: healthy",
        "mlflow: healthy",
    ):
        assert line in status.stdout, status.stdout
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.airflow_port}/api/v2/monitor/health", timeout=10
    ) as r:
        health = json.load(r)
    assert {k: v["status"] for k, v in health.items()} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }
    # the metadata database is the stack's PostgreSQL, not SQLite
    conn = stack.airflow("config", "get-value", "database", "sql_alchemy_conn").strip().splitlines()[-1]
    assert conn.startswith("postgresql") and f"127.0.0.1:{stack.pg_port}/airflow" in conn, conn
    assert (
        stack.airflow("config", "get-value", "core", "executor").strip().splitlines()[-1] == "LocalExecutor"
    )

    groups = _stack_pids(stack.data)
    listening = []
    for c in psutil.net_connections("inet"):
        if c.status != psutil.CONN_LISTEN or not c.pid:
            continue
        try:
            group = os.getpgid(c.pid)
        except ProcessLookupError:
            continue
        if group in groups.values() or c.pid == groups.get("postgresql"):
            listening.append((c.laddr.ip, c.laddr.port))
    ports = {port for _, port in listening}
    assert {stack.airflow_port, stack.mlflow_port, stack.pg_port} <= ports, listening
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"a service listens beyond 127.0.0.1: {listening}"


MLFLOW_SCRIPT = """
import sys
import mlflow
from mlflow import MlflowClient
from ml.registry import configure

uri, root = sys.argv[1:]
configure(uri, "stack_probe", root)
with mlflow.start_run() as run:
    mlflow.log_metric("auc", 0.75)
    mlflow.log_text("probe", "notes/probe.txt")
client = MlflowClient()
client.create_registered_model("stack_probe_model")
mv = client.create_model_version("stack_probe_model", run.info.artifact_uri + "/notes", run.info.run_id)
client.set_registered_model_alias("stack_probe_model", "champion", mv.version)
print(run.info.run_id, mv.version)
"""


def test_mlflow_runs_and_aliases_live_in_the_servers_postgresql(stack):
    import psycopg2

    root = stack.data / "mlflow-server-artifacts"
    env = {**stack.env, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", MLFLOW_SCRIPT, f"http://127.0.0.1:{stack.mlflow_port}", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id, version = proc.stdout.split()[-2:]
    with (
        psycopg2.connect(
            host="127.0.0.1", port=stack.pg_port, user="c360", password="c360-local", dbname="mlflow"
        ) as db,
        db.cursor() as cur,
    ):
        cur.execute(
            "SELECT r.status, m.value FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
            "WHERE r.run_uuid = %s AND m.key = 'auc'",
            (run_id,),
        )
        assert cur.fetchall() == [("FINISHED", 0.75)]
        cur.execute(
            "SELECT version FROM registered_model_aliases WHERE name = 'stack_probe_model' "
            "AND alias = 'champion'"
        )
        assert cur.fetchall() == [(int(version),)]
    # the client wrote the artifact under the server's artifact root, where the server lists it from
    assert (root / "stack_probe").is_dir()
    assert [p.read_text() for p in (root / "stack_probe").rglob("probe.txt")] == ["probe"]
    url = f"http://127.0.0.1:{stack.mlflow_port}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=notes"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert [f["path"] for f in json.load(r)["files"]] == ["notes/probe.txt"]


def test_task_that_fails_while_s3_is_unreachable_succeeds_on_its_retry(stack):
    import boto3
    from moto.server import ThreadedMotoServer

    day = "2026-03-05"
    stack.airflow("dags", "unpause", "probe_retry")
    stack.airflow("dags", "trigger", "probe_retry", "--logical-date", f"{day}T00:00:00+00:00")
    _wait(
        "first try failing on the unreachable S3",
        lambda: "retry try=1 failed StorageUnreachable" in stack.probe_lines(),
        180,
        stack,
        every=0.5,
    )
    # S3 comes back (and the transactions of the day are there) before the retry delay is over
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=stack.s3_port, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{stack.s3_port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(
            Bucket=BUCKET,
            Key=f"landing/transactions/dt={day}/transactions_{day}.csv",
            Body=b"order_id,customer_id\n1,c1\n",
        )
        runs = _wait(
            "probe_retry run finished",
            lambda: [r for r in stack.runs("probe_retry") if r["state"] in ("success", "failed")],
            240,
            stack,
        )
    finally:
        server.stop()
    assert [r["state"] for r in runs] == ["success"], runs
    retry_lines = [line for line in stack.probe_lines() if line.startswith("retry ")]
    assert retry_lines == [
        "retry try=1 start",
        "retry try=1 failed StorageUnreachable",
        "retry try=2 start",
        "retry try=2 landed=True",
    ], retry_lines


def test_backfill_through_airflow_makes_one_run_per_date_in_order(stack):
    dates = ["2026-03-10", "2026-03-11", "2026-03-12"]
    stack.airflow("dags", "unpause", "probe_transform")
    # backfill runs only move while the DAG is unpaused; with catchup=False that also starts the latest interval's
    # scheduled run, as in production
    stack.airflow("dags", "unpause", "probe_nightly")
    # make backfill-airflow: `airflow backfill create ... --max-active-runs 1` (without it the three runs ran at
    # once and finished 03-11, 03-12, 03-10)
    stack.run("backfill", dates[0], dates[-1], "probe_nightly")

    def nightly_done():
        runs = [r for r in stack.runs("probe_nightly") if r["run_id"].startswith("backfill__")]
        return (
            runs
            if len(runs) >= len(dates) and all(r["state"] in ("success", "failed") for r in runs)
            else None
        )

    runs = _wait("three backfill runs of probe_nightly", nightly_done, 300, stack)
    assert sorted(r["logical_date"][:10] for r in runs) == dates, runs
    assert all(r["state"] == "success" for r in runs), runs
    landed = [
        line.split()[1]
        for line in stack.probe_lines()
        if line.startswith("nightly ") and "backfill__" in line
    ]
    assert landed == dates, f"backfill ran the dates in the order {landed}"
    # each backfilled date started its own downstream run (the partitioned Asset schedule), in date order
    _wait(
        "probe_transform for every backfilled date",
        lambda: set(dates) <= set(stack.probe_lines()),
        240,
        stack,
    )
    time.sleep(5)  # a duplicate or collapsed downstream run would show up here
    transformed = [line for line in stack.probe_lines() if line in dates]
    assert transformed == dates, f"downstream runs resolved dates {transformed}"
    print(
        f"backfill: {len(runs)} runs of probe_nightly for {sorted(r['logical_date'][:10] for r in runs)}; "
        f"probe_transform dates {transformed}"
    )


def test_down_cleans_up_after_a_failed_up():
    import socket

    base = Path(tempfile.mkdtemp(prefix="c360-stack-"))  # not under pytest's 0700 temp root (see the fixture)
    data = base / "data"
    ports = {"pg": free_port(), "airflow": free_port(), "mlflow": free_port()}
    env = stack_env(data, **ports)
    env["C360_STACK_WAIT_SECONDS"] = "120"
    with socket.socket() as squatter:  # something else holds the MLflow port: the server cannot start
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports["mlflow"]))
        squatter.listen()
        up = subprocess.run([STACK, "up"], env=env, capture_output=True, text=True, timeout=400)
    assert up.returncode != 0, up.stdout
    assert "mlflow" in up.stderr and str(data / "run") in up.stderr, up.stderr[-2000:]
    started = _stack_pids(data)
    assert "postgresql" in started and "scheduler" in started, started  # the failure came after they started
    down = subprocess.run([STACK, "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    left = {name: pid for name, pid in started.items() if _alive(pid)}
    assert not left, f"still running after down: {left}"
    status = subprocess.run([STACK, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode != 0 and "postgresql: stopped" in status.stdout, status.stdout
    shutil.rmtree(base, ignore_errors=True)


# credentials other than the defaults, with characters a database URL must quote
OPS_USER, OPS_PASSWORD = "c360_ops", "Ops pw/with:@#%?&="


def _command_lines_holding(secrets: list[str]) -> list[str]:
    """The command line of every process on the machine that holds one of `secrets` (what `ps` shows anyone)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if any(secret in line for secret in secrets):
            found.append(line)
    return found


def test_mlflow_server_with_an_s3_artifact_root_and_other_credentials():
    """The production layout of docs/production.md: the tracking server on PostgreSQL, artifacts in S3 (here the
    moto server), written by the clients straight to the bucket and resolved back through the registry. The
    database credentials come from C360_PG_USER / C360_PG_PASSWORD, and the password shows on no command line."""
    import urllib.parse

    import boto3
    import psycopg2
    from moto.server import ThreadedMotoServer

    base = Path(tempfile.mkdtemp(prefix="c360-stack-"))  # not under pytest's 0700 temp root (see the fixture)
    data = base / "data"
    ports = {"pg": free_port(), "airflow": free_port(), "mlflow": free_port()}
    s3_port = free_port()
    (base / "no_dags").mkdir()
    env = stack_env(data, **ports)
    env.update(
        {
            "C360_STACK_DAGS_FOLDER": str(base / "no_dags"),
            "C360_MLFLOW_ARTIFACT_ROOT": "s3://c360-mlflow/artifacts",
            "C360_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "C360_PG_USER": OPS_USER,
            "C360_PG_PASSWORD": OPS_PASSWORD,
        }
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="c360-mlflow")
        up = subprocess.run([STACK, "up"], env=env, capture_output=True, text=True, timeout=600)
        try:
            assert up.returncode == 0, f"make up failed:\n{up.stdout[-2000:]}\n{up.stderr[-4000:]}"
            assert "artifacts: s3://c360-mlflow/artifacts" in up.stdout, up.stdout
            # the clients get the endpoint the way the stack's tasks do (infra/stack.sh exports it to them)
            client_env = {
                **env,
                "PYTHONPATH": str(ROOT),
                "MLFLOW_S3_ENDPOINT_URL": env["C360_S3_ENDPOINT_URL"],
            }
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MLFLOW_SCRIPT,
                    f"http://127.0.0.1:{ports['mlflow']}",
                    env["C360_MLFLOW_ARTIFACT_ROOT"],
                ],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            run_id = proc.stdout.split()[-2]
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="c360-mlflow").get("Contents", [])]
            assert [k for k in keys if k.endswith("notes/probe.txt")] == [
                f"artifacts/stack_probe/{run_id}/artifacts/notes/probe.txt"
            ], keys
            # the registry's champion resolves to the S3 copy, and the server lists the run's artifacts from S3
            fetched = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
                    "p = mlflow.artifacts.download_artifacts('models:/stack_probe_model@champion'); "
                    "print(open(p + '/probe.txt').read())",
                    f"http://127.0.0.1:{ports['mlflow']}",
                ],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert fetched.returncode == 0 and fetched.stdout.strip().endswith("probe"), fetched.stderr[
                -2000:
            ]
            url = (
                f"http://127.0.0.1:{ports['mlflow']}/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=notes"
            )
            with urllib.request.urlopen(url, timeout=30) as r:
                assert [f["path"] for f in json.load(r)["files"]] == ["notes/probe.txt"]
            # the run is in the database of the user and password given, which no process shows on its command line
            with (
                psycopg2.connect(
                    host="127.0.0.1", port=ports["pg"], user=OPS_USER, password=OPS_PASSWORD, dbname="mlflow"
                ) as db,
                db.cursor() as cur,
            ):
                cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
                assert cur.fetchall() == [("FINISHED",)]
            assert _stack_pids(data).keys() >= {"mlflow", "scheduler", "api-server", "postgresql"}
            leaks = _command_lines_holding([OPS_PASSWORD, urllib.parse.quote(OPS_PASSWORD, safe="")])
            assert not leaks, f"the database password is on a command line: {leaks}"
        finally:
            down = subprocess.run([STACK, "down"], env=env, capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, down.stderr
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
