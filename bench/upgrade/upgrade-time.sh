#!/usr/bin/env bash
# Hot upgrade timings of the sidecar, through bench/upgrade/sidecar-upgrade.yaml to an
# nginx upstream on 127.0.0.1:18081:
#
#  1. Time per upgrade with IDLE idle HTTP/1.1 keep-alive connections (default
#     10,000; held by bench/idle/hold.py, one request each, then idle): from the start
#     of the `--upgrade` process to the old process's exit, and to the new process's
#     log saying it adopted every connection; and how many it adopted.
#  2. p99 latency of a running wrk load (100 connections, WRK_SECS seconds) without an
#     upgrade, and with one started WRK_SECS/3 seconds in; wrk's errors for both.
#
#   bench/upgrade/upgrade-time.sh [target/release/sidecar]
#   IDLE=1000 bench/upgrade/upgrade-time.sh          # a smoke run
#
# Env: IDLE (10000), WINDOW (--upgrade-window, 1s), WRK_SECS (9). Needs nginx, wrk,
# python3, taskset and a file limit above IDLE + 300 (`ulimit -n`). Loopback only.
# Each result is one `RESULT ...` line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/sidecar}
IDLE=${IDLE:-10000}
WINDOW=${WINDOW:-1s}
WRK_SECS=${WRK_SECS:-9}
CONFIG=bench/upgrade/sidecar-upgrade.yaml
TMP=$(mktemp -d)
SOCK=$TMP/upgrade.sock
cat > "$TMP/nginx.conf" <<CONF
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log;
events { worker_connections 30000; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18081; location / { return 200 "hello world\n"; } }
}
CONF
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx -p "$TMP" -c "$TMP/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The log without terminal colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
GEN=0
# Starts a sidecar (`--upgrade` and the window when $1 is "upgrade"); sets $P and $LOG.
start() {
  GEN=$((GEN + 1))
  LOG=$TMP/sidecar-$GEN.log
  local extra=()
  [[ ${1:-} == upgrade ]] && extra=(--upgrade --upgrade-window "$WINDOW")
  RUST_LOG=info taskset -c 1 "$BIN" --config "$CONFIG" --upgrade-socket "$SOCK" "${extra[@]}" 2>"$LOG" &
  P=$!
  pids+=("$P")
}
# Waits until $2's log has $1 (or 60 s); prints the milliseconds since $3.
wait_log() {
  local until=$(( $(now_ms) + 60000 ))
  until plain "$2" | grep -q "$1"; do
    (( $(now_ms) < until )) || { echo "timed out waiting for '$1' in $2" >&2; cat "$2" >&2; exit 1; }
    sleep 0.01
  done
  echo $(( $(now_ms) - $3 ))
}
# Upgrades the running sidecar $P; sets EXIT_MS, ADOPT_MS, ADOPTED.
upgrade() {
  local old=$P old_log=$LOG t0
  t0=$(now_ms)
  start upgrade
  until ! kill -0 "$old" 2>/dev/null; do
    (( $(now_ms) < t0 + 120000 )) || { echo "the old process did not exit" >&2; cat "$old_log" >&2; exit 1; }
    sleep 0.01
  done
  EXIT_MS=$(( $(now_ms) - t0 ))
  ADOPT_MS=$(wait_log "adopted the old process's idle connections" "$LOG" "$t0")
  ADOPTED=$(plain "$LOG" | grep -o "adopted the old process's idle connections connections=[0-9]*" | grep -o "[0-9]*$")
}
# wrk's p99 (ms) and errors of its output in $1.
p99() { awk '/^ +99%/ { v = $2; if (v ~ /us$/) { sub("us", "", v); v /= 1000 } else if (v ~ /ms$/) { sub("ms", "", v) } else if (v ~ /s$/) { sub("s", "", v); v *= 1000 } printf "%.2f", v }' "$1"; }
errors() {
  local e
  e=$(grep -E "Socket errors|Non-2xx" "$1" | tr -s ' ' | tr '\n' ';' || true)
  echo "${e:-none}"
}

nginx -p "$TMP" -c "$TMP/nginx.conf"
start
wait_log "serving upgrades" "$LOG" "$(now_ms)" >/dev/null
sleep 0.5

# 1. Idle connections.
: >"$TMP/hold.out"
taskset -c 0 python3 bench/idle/hold.py "$IDLE" >"$TMP/hold.out" &
HOLD=$!
pids+=("$HOLD")
until grep -q "idle open" "$TMP/hold.out"; do
  kill -0 "$HOLD" 2>/dev/null || { echo "hold.py failed" >&2; exit 1; }
  sleep 0.1
done
sleep 1
upgrade
echo "RESULT upgrade idle_conns=$IDLE window=$WINDOW to_old_exit_ms=$EXIT_MS to_all_adopted_ms=$ADOPT_MS adopted=$ADOPTED"
(( ADOPTED >= IDLE )) || echo "WARNING: $ADOPTED of $IDLE idle connections adopted"
kill "$HOLD" 2>/dev/null || true
wait "$HOLD" 2>/dev/null || true
sleep 1

# 2. p99 of a running load, without and with an upgrade.
taskset -c 0 wrk -t1 -c100 -d"${WRK_SECS}s" --latency http://127.0.0.1:18080/ >"$TMP/base.txt"
taskset -c 0 wrk -t1 -c100 -d"${WRK_SECS}s" --latency http://127.0.0.1:18080/ >"$TMP/during.txt" &
WRK=$!
sleep $(( WRK_SECS / 3 ))
upgrade
wait "$WRK"
echo "RESULT wrk c=100 secs=$WRK_SECS p99_ms_without_upgrade=$(p99 "$TMP/base.txt") p99_ms_during_upgrade=$(p99 "$TMP/during.txt") rps_without=$(awk '/Requests\/sec/ {print $2}' "$TMP/base.txt") rps_during=$(awk '/Requests\/sec/ {print $2}' "$TMP/during.txt") errors_without=\"$(errors "$TMP/base.txt")\" errors_during=\"$(errors "$TMP/during.txt")\" upgrade_to_old_exit_ms=$EXIT_MS adopted=$ADOPTED"
