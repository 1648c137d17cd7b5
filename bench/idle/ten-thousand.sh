#!/usr/bin/env bash
# Memory per idle connection at 10,000 connections: 9,900 idle HTTP/1.1 keep-alive
# connections (one request each, then nothing) and 100 busy ones (wrk), through the
# sidecar with bench/sidecar-bench.yaml to an nginx upstream on 127.0.0.1:18081.
# Prints the sidecar's RSS after 100 busy connections, with the 9,900 idle ones
# open, and with both; RSS per idle connection is the difference over 9,900.
#
#   bench/idle/ten-thousand.sh target/release/sidecar
#
# Needs nginx, wrk, python3, taskset and a file limit of at least ~10,300 for the
# sidecar and for python (`ulimit -n`). Sends traffic to loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/sidecar}
IDLE=${IDLE:-9900}
TMP=$(mktemp -d)
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
nginx -p "$TMP" -c "$TMP/nginx.conf"
taskset -c 1 "$BIN" --config bench/sidecar-bench.yaml >/dev/null 2>&1 &
P=$!; pids+=("$P")
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$P/status"; }
taskset -c 0 wrk -t1 -c100 -d5s http://127.0.0.1:18080/ >/dev/null
busy=$(rss)
taskset -c 0 python3 bench/idle/hold.py "$IDLE" &
pids+=("$!")
sleep 25
idle=$(rss)
taskset -c 0 wrk -t1 -c100 -d5s http://127.0.0.1:18080/ | grep -E "Requests/sec"
both=$(rss)
echo "RESULT idle_conns=$IDLE rss_after_100_busy_kb=$busy rss_with_idle_kb=$idle rss_with_idle_and_100_busy_kb=$both peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$P/status") kb_per_idle_conn=$(awk -v a="$idle" -v b="$busy" -v n="$IDLE" 'BEGIN {printf "%.2f", (a-b)/n}')"
