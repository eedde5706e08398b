#!/usr/bin/env bash
# UNFINISHED (not wired into the Makefile): `airflow db migrate` on PostgreSQL fails with
# "No module named asyncpg" (Airflow 3.3 also opens an async engine); asyncpg must be added next.
# The production-shaped stack on 127.0.0.1, from packages only (no Docker):
#   PostgreSQL (Debian package; data dir $C360_DATA_DIR/postgres, own port), the Airflow 3 scheduler,
#   dag-processor, triggerer and api-server on a PostgreSQL metadata DB with the LocalExecutor, and an MLflow
#   tracking server with a PostgreSQL backend store.
# Usage: infra/stack.sh up|down|status. Settings (env, safe local defaults): C360_DATA_DIR, C360_PG_PORT (55432),
# C360_PG_USER / C360_PG_PASSWORD (c360 / c360-local), C360_AIRFLOW_PORT (8080), C360_MLFLOW_PORT (5000),
# C360_MLFLOW_ARTIFACT_ROOT (default $C360_DATA_DIR/mlflow-server-artifacts; s3://bucket/prefix works, with
# MLFLOW_S3_ENDPOINT_URL for an S3-compatible store).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
DATA="$(realpath -m "${C360_DATA_DIR:-$ROOT/data}")"
PGDATA="$DATA/postgres"
RUN="$DATA/run"
PG_PORT="${C360_PG_PORT:-55432}"
PG_USER="${C360_PG_USER:-c360}"
PG_PASSWORD="${C360_PG_PASSWORD:-c360-local}"
AF_PORT="${C360_AIRFLOW_PORT:-8080}"
ML_PORT="${C360_MLFLOW_PORT:-5000}"
ML_ARTIFACTS="${C360_MLFLOW_ARTIFACT_ROOT:-$DATA/mlflow-server-artifacts}"
PG_URL="postgresql+psycopg2://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT"

export C360_DATA_DIR="$DATA"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$DATA/airflow-prod}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="$PG_URL/airflow"
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__API__PORT="$AF_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AF_PORT/execution/"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$ML_PORT"
export PATH="$BIN:$PATH" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

as_pg() { runuser -u postgres -- "$@"; }  # the server refuses to run as root

ensure_postgres_package() {
  [ -n "$PG_BIN" ] && return
  echo "PostgreSQL not installed: apt-get install postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
}

pg_up() {
  ensure_postgres_package
  mkdir -p "$DATA" "$RUN"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    install -d -o postgres -g postgres -m 700 "$PGDATA"
    local pw; pw="$(mktemp)"; echo "$PG_PASSWORD" > "$pw"; chown postgres "$pw"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pw" -A scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pw"
  fi
  # postgres must reach its data dir through the project's folders
  chmod o+x "$DATA" 2>/dev/null || true
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA" >/dev/null
  fi
  for db in airflow mlflow; do
    PGPASSWORD="$PG_PASSWORD" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 || \
      PGPASSWORD="$PG_PASSWORD" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$db"
  done
}

start() {  # start NAME CMD...: detached, own session, pid in $RUN/NAME.pid, log in $RUN/NAME.log
  local name="$1"; shift
  if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then return; fi
  setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null & echo $! > "$RUN/$name.pid"
}

wait_http() {  # wait_http URL SECONDS
  local deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || { echo "not healthy within $2 s: $1 (logs in $RUN)"; return 1; }
    sleep 1
  done
}

up() {
  local t0=$SECONDS
  pg_up
  mkdir -p "$AIRFLOW_HOME"
  # the project's Airflow settings (dags folder, 127.0.0.1, logs) plus the ones exported above
  eval "$("$BIN/python" -c 'from c360.airflow_env import airflow_env; import shlex
env = airflow_env()
print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("AIRFLOW", "C360_"))))')"
  "$BIN/airflow" db migrate >"$RUN/airflow-migrate.log" 2>&1
  "$BIN/airflow" pools set warehouse 1 "Tasks that write the DuckDB warehouse (single writer)" >/dev/null 2>&1
  start mlflow "$BIN/mlflow" server --host 127.0.0.1 --port "$ML_PORT" \
    --backend-store-uri "$PG_URL/mlflow" --artifacts-destination "$ML_ARTIFACTS" --serve-artifacts --workers 1
  start api-server "$BIN/airflow" api-server --host 127.0.0.1 --port "$AF_PORT"
  start scheduler "$BIN/airflow" scheduler
  start dag-processor "$BIN/airflow" dag-processor
  start triggerer "$BIN/airflow" triggerer  # the sensors poke today; deferrable operators need it
  wait_http "http://127.0.0.1:$ML_PORT/health" 180
  wait_http "http://127.0.0.1:$AF_PORT/api/v2/monitor/health" 180
  local deadline=$((SECONDS + 120))
  until curl -sf "http://127.0.0.1:$AF_PORT/api/v2/monitor/health" | "$BIN/python" -c 'import json,sys
h = json.load(sys.stdin); sys.exit(0 if all(h[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")) else 1)'; do
    [ $SECONDS -lt $deadline ] || { echo "Airflow components not healthy within 120 s (logs in $RUN)"; return 1; }
    sleep 2
  done
  echo "PostgreSQL  127.0.0.1:$PG_PORT (user $PG_USER; databases airflow, mlflow; data $PGDATA)"
  echo "Airflow UI  http://127.0.0.1:$AF_PORT  (password: $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
  echo "MLflow UI   http://127.0.0.1:$ML_PORT"
  echo "all services healthy $((SECONDS - t0)) s after start"
}

down() {
  for name in triggerer dag-processor scheduler api-server mlflow; do
    [ -f "$RUN/$name.pid" ] || continue
    local pid; pid="$(cat "$RUN/$name.pid")"
    # each service runs in its own session (setsid): stop its whole process group (workers, task runners)
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
  if [ -n "$PG_BIN" ] && [ -s "$PGDATA/PG_VERSION" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  echo "stack stopped"
}

status() {
  local rc=0
  for name in mlflow api-server scheduler dag-processor triggerer; do
    if [ -f "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name: stopped"; rc=1; fi
  done
  if [ -n "$PG_BIN" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    echo "postgresql: running on 127.0.0.1:$PG_PORT"
  else echo "postgresql: stopped"; rc=1; fi
  curl -sf "http://127.0.0.1:$AF_PORT/api/v2/monitor/health" && echo || echo "airflow api: not answering"
  return $rc
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;;
  *) echo "usage: $0 up|down|status"; exit 2 ;;
esac
