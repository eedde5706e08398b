#!/usr/bin/env bash
# A one-machine Spark standalone cluster (one master, one worker) from the pyspark installed in .venv.
#
#   infra/spark_standalone.sh start|stop|status
#
# Everything binds to 127.0.0.1: master spark://127.0.0.1:7077, master UI http://127.0.0.1:8090 (its /json/
# is what `start` polls), worker UI http://127.0.0.1:8091. Logs, pid files and executor work dirs go to
# .spark-cluster/ (git-ignored). `start` is idempotent and returns once the worker is registered;
# `stop` ends the daemons and everything they started (executors, Python workers).
# Then run any job with SPARK_MASTER=spark://127.0.0.1:7077 PYSPARK_PYTHON=$PWD/.venv/bin/python
# SPARK_LOCAL_IP=127.0.0.1 (docs/scale.md, "Running at scale").
#
# Overrides (Spark's own spark-env.sh names): SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8090),
# SPARK_WORKER_WEBUI_PORT (8091), SPARK_WORKER_CORES (2), SPARK_WORKER_MEMORY (3g), SPARK_DAEMON_MEMORY (512m);
# SPARK_CLUSTER_TIMEOUT (seconds to wait for the worker, 90).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
DIR="$ROOT/.spark-cluster"
HOST=127.0.0.1
MASTER_PORT="${SPARK_MASTER_PORT:-7077}"
MASTER_UI_PORT="${SPARK_MASTER_WEBUI_PORT:-8090}"
WORKER_UI_PORT="${SPARK_WORKER_WEBUI_PORT:-8091}"
WORKER_CORES="${SPARK_WORKER_CORES:-2}"
WORKER_MEMORY="${SPARK_WORKER_MEMORY:-3g}"
TIMEOUT="${SPARK_CLUSTER_TIMEOUT:-90}"
MASTER_URL="spark://$HOST:$MASTER_PORT"
STATUS_URL="http://$HOST:$MASTER_UI_PORT/json/"

die() { echo "spark_standalone: $*" >&2; exit 1; }

spark_home() {
  [ -x "$PY" ] || die "no $PY: run 'make venv' first"
  "$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

# pid of a running daemon of ours (pid file present, process alive and still that Spark class), else empty
running_pid() {
  local name=$1 class=$2 pid
  [ -f "$DIR/$name.pid" ] || return 0
  pid=$(cat "$DIR/$name.pid")
  if [ -n "$pid" ] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -q "$class"; then
    echo "$pid"
  else
    rm -f "$DIR/$name.pid"  # stale: the process is gone (or the pid was reused)
  fi
}

# Whether the process `launch` started for $1 is alive, by its pid alone. During start-up spark-class first runs
# Spark's launcher and then execs java: /proc/<pid>/cmdline can read empty at that instant, so running_pid's
# cmdline match could call the process gone (and delete its pid file, leaving `stop` unable to end it).
launched_alive() {
  local pid
  pid=$(cat "$DIR/$1.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_busy() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

# "master_alive alive_workers" from the master's JSON status, or nothing if it does not answer
cluster_state() {
  "$PY" - "$STATUS_URL" <<'EOF' 2>/dev/null || true
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1], timeout=2))
print(s.get("status"), sum(w.get("state") == "ALIVE" for w in s.get("workers", [])))
EOF
}

launch() {  # name class args...: a daemon in its own session (so stop can end everything it started)
  local name=$1 class=$2 log
  shift 2
  log="$DIR/logs/$name.log"
  [ -f "$log" ] && mv "$log" "$log.1"
  # spark-class execs java, so $! is the JVM's pid and, through setsid, its session id
  setsid "$SPARK_HOME/bin/spark-class" "$class" "$@" >"$log" 2>&1 </dev/null &
  echo $! > "$DIR/$name.pid"
  echo "started $name (pid $!), log $log"
}

start() {
  mkdir -p "$DIR/logs" "$DIR/work" "$DIR/tmp"
  command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || die "no java on the PATH (Spark 4 needs Java 17+)"
  SPARK_HOME="$(spark_home)" || die "cannot import pyspark with $PY"
  export SPARK_HOME
  [ -x "$SPARK_HOME/bin/spark-class" ] || die "$SPARK_HOME/bin/spark-class missing: is pyspark installed from pip?"
  # Bind RPC and web UIs to loopback only; no REST submission server; our own conf dir (ignore any global one)
  export SPARK_LOCAL_IP=$HOST SPARK_LOCAL_HOSTNAME=$HOST SPARK_CONF_DIR="$DIR/conf"
  export SPARK_LOCAL_DIRS="$DIR/tmp" SPARK_WORKER_DIR="$DIR/work"
  export SPARK_DAEMON_MEMORY="${SPARK_DAEMON_MEMORY:-512m}"
  export SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false ${SPARK_MASTER_OPTS:-}"
  # executors' app folders are deleted 1 h after their application ends
  export SPARK_WORKER_OPTS="-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=3600 ${SPARK_WORKER_OPTS:-}"
  mkdir -p "$SPARK_CONF_DIR"

  local pid
  pid=$(running_pid master deploy.master.Master)
  if [ -n "$pid" ]; then
    echo "master already running (pid $pid)"
  else
    port_busy "$MASTER_PORT" && die "port $MASTER_PORT is in use by another process (not started by this script)"
    port_busy "$MASTER_UI_PORT" && die "port $MASTER_UI_PORT (master UI) is in use; set SPARK_MASTER_WEBUI_PORT"
    launch master org.apache.spark.deploy.master.Master \
      --host $HOST --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
  fi
  pid=$(running_pid worker deploy.worker.Worker)
  if [ -n "$pid" ]; then
    echo "worker already running (pid $pid)"
  else
    launch worker org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
      --host $HOST --webui-port "$WORKER_UI_PORT" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" \
      --work-dir "$DIR/work"
  fi

  local waited=0 state
  while :; do
    state=$(cluster_state)
    if [ "${state%% *}" = "ALIVE" ] && [ "${state##* }" -ge 1 ] 2>/dev/null; then
      echo "cluster ready after ${waited}s: $MASTER_URL (${state##* } worker, UI http://$HOST:$MASTER_UI_PORT)"
      return 0
    fi
    for name in master worker; do
      if ! launched_alive $name; then
        tail -n 20 "$DIR/logs/$name.log" >&2 || true
        die "the $name exited during start-up (log above: $DIR/logs/$name.log)"
      fi
    done
    if [ "$waited" -ge "$TIMEOUT" ]; then
      tail -n 20 "$DIR/logs/master.log" "$DIR/logs/worker.log" >&2 || true
      die "no worker registered with $MASTER_URL after ${TIMEOUT}s (state: ${state:-master not answering on $STATUS_URL}); logs in $DIR/logs; run '$0 stop' to clean up"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# Every process in the daemon's session: setsid made the daemon a session leader, and its executors and their
# Python workers stay in that session (pyspark's daemon moves itself to a new process group, not a new session).
session_pids() { ps -eo pid=,sid= | awk -v s="$1" '$2 == s {print $1}'; }

stop_one() {
  local name=$1 class=$2 pid pids i
  pid=$(running_pid "$name" "$class")
  if [ -z "$pid" ]; then
    echo "$name not running"
    return 0
  fi
  # shellcheck disable=SC2046  # word splitting intended: a list of pids
  kill -TERM $(session_pids "$pid") 2>/dev/null || true
  for i in $(seq 1 30); do
    [ -n "$(session_pids "$pid")" ] || break
    sleep 0.5
  done
  pids=$(session_pids "$pid")
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    echo "$name (pid $pid) killed after 15 s"
  else
    echo "$name (pid $pid) stopped"
  fi
  rm -f "$DIR/$name.pid"
}

stop() {
  # the master first: a worker shutting down under a live master would be asked to relaunch the executors it kills
  stop_one master deploy.master.Master
  stop_one worker deploy.worker.Worker
}

status() {
  local m w state
  m=$(running_pid master deploy.master.Master)
  w=$(running_pid worker deploy.worker.Worker)
  echo "master: ${m:+running (pid $m)}$([ -n "$m" ] || echo "not running")"
  echo "worker: ${w:+running (pid $w)}$([ -n "$w" ] || echo "not running")"
  state=$(cluster_state)
  if [ -n "$state" ]; then
    echo "$MASTER_URL: status ${state%% *}, ${state##* } alive worker(s)"
  fi
  [ -n "$m" ] && [ -n "$w" ] && [ "${state%% *}" = "ALIVE" ] && [ "${state##* }" -ge 1 ] 2>/dev/null
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
