#!/usr/bin/env bash
# The production-shaped stack on 127.0.0.1, from packages only (no Docker):
#   PostgreSQL (Debian package, installed when missing; data dir $C360_DATA_DIR/postgres, its own port), the
#   Airflow 3 scheduler, dag-processor, triggerer and api-server on a PostgreSQL metadata DB with the
#   LocalExecutor, and an MLflow tracking server with a PostgreSQL backend store.
# Usage: infra/stack.sh up|down|status (make up / make down / make status), backfill FROM TO [DAG_ID]
# (make backfill-airflow), airflow ARGS... (the CLI against the stack), env. docs/production.md explains it.
# Settings (env, safe local defaults):
#   C360_DATA_DIR (./data)            everything the stack writes: postgres/, airflow-prod/, run/ (pids, logs)
#   C360_PG_PORT (55432)              PostgreSQL port (not 5432: a system PostgreSQL may already use it)
#   C360_PG_USER / C360_PG_PASSWORD   (c360 / c360-local) the superuser initdb creates; scram-sha-256 auth
#   C360_PG_HOST (127.0.0.1)          set it (with the two above) to use a managed PostgreSQL: no local server
#   C360_AIRFLOW_PORT (8080)          Airflow api-server (UI + REST + execution API)
#   C360_MLFLOW_PORT (5000)           MLflow tracking server (UI + REST)
#   C360_MLFLOW_ARTIFACT_ROOT         ($C360_DATA_DIR/mlflow-server-artifacts) local dir or s3://bucket/prefix;
#                                     with C360_S3_ENDPOINT_URL for an S3-compatible store (moto, MinIO)
#   C360_STACK_WAIT_SECONDS (240)     how long `up` waits for every service to be healthy
#   C360_STACK_DAGS_FOLDER            another DAGs folder than dags/ (the tests' probe DAGs)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
DATA="$(realpath -m "${C360_DATA_DIR:-$ROOT/data}")"
PGDATA="$DATA/postgres"
RUN="$DATA/run"
PG_HOST="${C360_PG_HOST:-127.0.0.1}"
PG_PORT="${C360_PG_PORT:-55432}"
PG_USER="${C360_PG_USER:-c360}"
PG_PASSWORD="${C360_PG_PASSWORD:-c360-local}"
AF_PORT="${C360_AIRFLOW_PORT:-8080}"
ML_PORT="${C360_MLFLOW_PORT:-5000}"
ML_ARTIFACTS="${C360_MLFLOW_ARTIFACT_ROOT:-$DATA/mlflow-server-artifacts}"
WAIT="${C360_STACK_WAIT_SECONDS:-240}"
# the password may hold URL-special characters. It is passed by environment, never as an argument: a command line
# is readable by every user (ps); /proc/PID/environ only by the process's owner and root.
PG_PASSWORD_Q="$(C360_PG_PASSWORD="$PG_PASSWORD" python3 -c 'import os, urllib.parse
print(urllib.parse.quote(os.environ["C360_PG_PASSWORD"], safe=""))')"
PG_URL="postgresql+psycopg2://$PG_USER:$PG_PASSWORD_Q@$PG_HOST:$PG_PORT"
LOCAL_PG=$([ "$PG_HOST" = 127.0.0.1 ] && echo 1 || echo 0)
SERVICES="mlflow api-server scheduler dag-processor triggerer"

export C360_DATA_DIR="$DATA"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$DATA/airflow-prod}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$PG_URL/airflow"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__API__PORT="$AF_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AF_PORT/execution/"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$ML_PORT"
# the tasks' MLflow clients write artifacts straight to the same root the server lists them from
export C360_MLFLOW_ARTIFACT_ROOT="$ML_ARTIFACTS"
if [ -n "${C360_S3_ENDPOINT_URL:-}" ]; then export MLFLOW_S3_ENDPOINT_URL="$C360_S3_ENDPOINT_URL"; fi
export PATH="$BIN:$PATH" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" NO_PROXY="*"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

as_pg() { runuser -u postgres -- "$@"; }  # the server refuses to run as root
psql_() { PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

pipeline_env() {  # the project's Airflow settings (dags folder, 127.0.0.1, logs) on top of the ones above
  eval "$("$BIN/python" -c 'from c360.pipeline.airflow_env import airflow_env; import shlex
env = airflow_env()
print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("AIRFLOW", "C360_"))))')"
  # another DAGs folder (tests/production_dags: the probe DAGs of tests/test_production_stack.py)
  if [ -n "${C360_STACK_DAGS_FOLDER:-}" ]; then export AIRFLOW__CORE__DAGS_FOLDER="$C360_STACK_DAGS_FOLDER"; fi
}

ensure_postgres_package() {
  [ -n "$PG_BIN" ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL is not installed and this is not a root Debian/Ubuntu shell: install the 'postgresql' package" \
         "(or point C360_PG_HOST/C360_PG_PORT/C360_PG_USER/C360_PG_PASSWORD at a server) and run make up again" >&2
    return 1
  fi
  echo "PostgreSQL not installed: apt-get install postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
}

# The postmaster's pid, read as root: `pg_ctl status/stop` as the postgres user need it to traverse every folder
# above the data dir, which a parent may lose later (pytest resets its temp root to 0700 on every session).
pg_pid() {
  local pid
  pid="$(head -1 "$PGDATA/postmaster.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] && echo "$pid"
}
pg_running() { pg_pid >/dev/null; }

pg_up() {
  ensure_postgres_package
  if [ "$LOCAL_PG" = 1 ]; then
    # the postgres user must reach its data dir through the project's folders (traverse only, no read)
    local d="$DATA"
    while [ "$d" != / ]; do
      [ "$(stat -c %A "$d" | cut -c10)" = x ] || chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"
    done
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      install -d -o postgres -g postgres -m 700 "$PGDATA"
      local pw; pw="$(mktemp)"; echo "$PG_PASSWORD" > "$pw"; chown postgres "$pw"
      as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pw" -A scram-sha-256 -E UTF8 >/dev/null
      rm -f "$pw"
    fi
    if ! pg_running; then
      # -k: the Unix socket in the data dir, not /var/run/postgresql (a system server's, maybe not writable)
      as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA" >/dev/null \
        || { echo "PostgreSQL did not start: $PGDATA/server.log" >&2; tail -5 "$PGDATA/server.log" >&2; return 1; }
    fi
  fi
  for db in airflow mlflow; do
    psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 || psql_ -d postgres -qc "CREATE DATABASE $db"
  done
}

start() {  # start NAME CMD...: detached in its own session, pid in $RUN/NAME.pid, output in $RUN/NAME.log
  local name="$1"; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then return; fi
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null & echo $! > "$RUN/$name.pid"
}

fail() {  # fail MESSAGE NAME...: say what did not come up and show the end of its log
  echo "$1" >&2
  shift
  for name in "$@"; do [ -f "$RUN/$name.log" ] && { echo "--- last lines of $RUN/$name.log" >&2; tail -15 "$RUN/$name.log" >&2; }; done
  echo "Inspect the logs in $RUN, then 'make down' (or infra/stack.sh down) before trying again." >&2
  exit 1
}

airflow_healthy() {  # every component the api-server reports on is healthy
  curl -sf --max-time 5 "http://127.0.0.1:$AF_PORT/api/v2/monitor/health" | "$BIN/python" -c 'import json, sys
h = json.load(sys.stdin)
sys.exit(0 if all(h.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")) else 1)' 2>/dev/null
}

up() {
  local t0; t0=$(date +%s.%N)
  mkdir -p "$DATA" "$RUN" "$AIRFLOW_HOME"
  [[ "$ML_ARTIFACTS" == *://* ]] || mkdir -p "$ML_ARTIFACTS"
  pg_up
  pipeline_env
  "$BIN/airflow" db migrate >"$RUN/airflow-migrate.log" 2>&1 || fail "airflow db migrate failed" airflow-migrate
  "$BIN/airflow" pools set warehouse 1 "Tasks that open the DuckDB warehouse (one process at a time: DuckDB file lock)" >/dev/null 2>&1
  # the backend store URI holds the password: mlflow server reads it from MLFLOW_BACKEND_STORE_URI (not from ps)
  ( export MLFLOW_BACKEND_STORE_URI="$PG_URL/mlflow"
    start mlflow "$BIN/mlflow" server --host 127.0.0.1 --port "$ML_PORT" --workers 1 \
      --default-artifact-root "$ML_ARTIFACTS" --no-serve-artifacts )
  start api-server "$BIN/airflow" api-server --host 127.0.0.1 --port "$AF_PORT"
  # --skip-serve-logs: the log servers bind every interface; the api-server reads the task logs from the
  # shared local log folder instead (a multi-host deployment needs remote logging, docs/production.md)
  start scheduler "$BIN/airflow" scheduler --skip-serve-logs
  start dag-processor "$BIN/airflow" dag-processor
  start triggerer "$BIN/airflow" triggerer --skip-serve-logs  # deferrable operators; the sensors poke today
  local deadline=$((SECONDS + WAIT)) ml=0 af=0
  until [ $ml = 1 ] && [ $af = 1 ]; do
    for name in $SERVICES; do
      kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || fail "$name exited during start-up" "$name"
    done
    [ $ml = 1 ] || { curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$ML_PORT/health" && ml=1; } || true
    [ $af = 1 ] || { airflow_healthy && af=1; } || true
    [ $SECONDS -lt $deadline ] || fail "not all services healthy within $WAIT s (mlflow=$ml airflow=$af)" $SERVICES
    sleep 1
  done
  local took; took=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0")
  echo "PostgreSQL  $PG_HOST:$PG_PORT (user $PG_USER; databases airflow, mlflow$([ "$LOCAL_PG" = 1 ] && echo "; data $PGDATA"))"
  echo "Airflow UI  http://127.0.0.1:$AF_PORT  (users/passwords: $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
  echo "MLflow UI   http://127.0.0.1:$ML_PORT  (artifacts: $ML_ARTIFACTS)"
  echo "Logs        $RUN/*.log, task logs in $AIRFLOW_HOME/logs"
  echo "DAGs start paused: unpause c360_ingest, c360_transform, c360_score (and c360_train) in the UI or with"
  echo "  infra/stack.sh airflow dags unpause c360_ingest ..."
  echo "all services healthy ${took} s after make up"
}

down() {
  for name in triggerer dag-processor scheduler api-server mlflow; do
    [ -f "$RUN/$name.pid" ] || continue
    local pid; pid="$(cat "$RUN/$name.pid")"
    # each service runs in its own session (setsid): stop its whole process group (workers, task runners)
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
  done
  local pg; pg="$(pg_pid)" || true
  if [ "$LOCAL_PG" = 1 ] && [ -n "$pg" ]; then
    kill -INT "$pg"  # PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit
    for _ in $(seq 60); do kill -0 "$pg" 2>/dev/null || break; sleep 1; done
    kill -0 "$pg" 2>/dev/null && { echo "PostgreSQL (pid $pg) did not stop within 60 s: $PGDATA/server.log" >&2; return 1; }
  fi
  echo "stack stopped (data kept in $DATA)"
}

status() {
  local rc=0
  for name in $SERVICES; do
    if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name: stopped"; rc=1; fi
  done
  if [ "$LOCAL_PG" = 0 ]; then
    echo "postgresql: external at $PG_HOST:$PG_PORT"
  elif pg_running; then
    echo "postgresql: running on 127.0.0.1:$PG_PORT"
  else echo "postgresql: stopped"; rc=1; fi
  if airflow_healthy; then echo "airflow: healthy on http://127.0.0.1:$AF_PORT"; else echo "airflow: not healthy"; rc=1; fi
  if curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$ML_PORT/health"; then
    echo "mlflow: healthy on http://127.0.0.1:$ML_PORT"
  else echo "mlflow: not answering"; rc=1; fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  airflow) shift; pipeline_env; exec "$BIN/airflow" "$@" ;;  # the airflow CLI against the stack's database
  backfill)  # backfill FROM TO [DAG_ID]: one run per date, one at a time, oldest first (like make backfill)
    [ $# -ge 3 ] || { echo "usage: $0 backfill FROM TO [DAG_ID (c360_ingest)]"; exit 2; }
    pipeline_env
    # --max-active-runs 1: a backfill's own limit replaces the DAG's max_active_runs (Airflow's default is 10),
    # and concurrent runs finish in any order (measured: 03-11, 03-12, 03-10); nights must land in date order
    exec "$BIN/airflow" backfill create --dag-id "${4:-c360_ingest}" --from-date "$2" --to-date "$3" \
      --max-active-runs 1 --reprocess-behavior completed ;;
  env) pipeline_env; env | grep -E '^(AIRFLOW|C360_|MLFLOW_)' | grep -v -i "password\|secret\|conn=" | sort ;;
  *) echo "usage: $0 up|down|status|backfill FROM TO [DAG_ID]|airflow ARGS...|env"; exit 2 ;;
esac
