#!/usr/bin/env bash
# Bolt through the sidecar against a direct connection, Rust peers only.
#
# rpc-load's echo server (`rpc-load serve`, a fixed answer per call) and its load
# generator (`rpc-load run`: CONNECTIONS connections with CONCURRENCY calls in flight
# each, DURATION_MS after WARMUP_MS) run ROUNDS rounds of: direct to the server, then
# through the sidecar (listener `protocol: bolt` -> cluster `protocol: bolt`, one
# worker thread), then the same two one call at a time (the single-call latency).
# Each run prints a RESULT line; the end prints the medians and the sidecar's CPU time
# per call (utime+stime during the measured window, from /proc/PID/stat).
#
#   cargo build --release -p sidecar -p rpc-load
#   bench/rpc/bolt-rust.sh
#
# Environment: SIDECAR (default target/release/sidecar), RPC_LOAD
# (target/release/rpc-load), ROUNDS (3), DURATION_MS (10000), WARMUP_MS (1000),
# CONNECTIONS (1), CONCURRENCY (64), PAYLOAD_BYTES (64), ONE_AT_A_TIME (1: also the
# single-call runs; 0: not), PROXY_CPU (1) and LOAD_CPU (0) for taskset pinning when
# taskset exists and the machine has 2+ CPUs. Everything started here is stopped by
# PID on exit; files live in one temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
SIDECAR="${SIDECAR:-$TARGET/release/sidecar}"
RPC_LOAD="${RPC_LOAD:-$TARGET/release/rpc-load}"
ROUNDS="${ROUNDS:-3}"
DURATION_MS="${DURATION_MS:-10000}"
WARMUP_MS="${WARMUP_MS:-1000}"
CONNECTIONS="${CONNECTIONS:-1}"
CONCURRENCY="${CONCURRENCY:-64}"
PAYLOAD_BYTES="${PAYLOAD_BYTES:-64}"
ONE_AT_A_TIME="${ONE_AT_A_TIME:-1}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"

die() { echo "bolt-rust: $*" >&2; exit 1; }
[ -x "$SIDECAR" ] || die "no sidecar binary at $SIDECAR (cargo build --release -p sidecar, or SIDECAR=...)"
[ -x "$RPC_LOAD" ] || die "no rpc-load binary at $RPC_LOAD (cargo build --release -p rpc-load, or RPC_LOAD=...)"

PIN_PROXY=() PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN_PROXY=(taskset -c "$PROXY_CPU") PIN_LOAD=(taskset -c "$LOAD_CPU")
fi
CLK_TCK="$(getconf CLK_TCK)"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

wait_port() {
  local port=$1 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "nothing listens on 127.0.0.1:$port"
}

# The echo server, on a port the kernel picks.
"${PIN_LOAD[@]}" "$RPC_LOAD" serve --addr 127.0.0.1:0 >"$TMP/server.out" 2>"$TMP/server.err" &
PIDS+=($!)
for _ in $(seq 1 200); do
  grep -q LISTENING "$TMP/server.out" 2>/dev/null && break
  sleep 0.05
done
SERVER_PORT="$(awk '/LISTENING/{print $2}' "$TMP/server.out")"
[ -n "$SERVER_PORT" ] || die "the echo server did not start: $(cat "$TMP/server.err")"

# A free port for the sidecar: one the kernel picked for a listener just closed.
"$RPC_LOAD" serve --addr 127.0.0.1:0 >"$TMP/probe.out" 2>&1 &
PROBE=$!
for _ in $(seq 1 200); do
  grep -q LISTENING "$TMP/probe.out" 2>/dev/null && break
  sleep 0.05
done
PROXY_PORT="$(awk '/LISTENING/{print $2}' "$TMP/probe.out")"
kill "$PROBE" && wait "$PROBE" 2>/dev/null || true
[ -n "$PROXY_PORT" ] || die "no free port"

# The sidecar: one worker thread, Bolt in, Bolt out.
cat >"$TMP/sidecar.yaml" <<YAML
runtime:
  worker_threads: 1
listeners:
  - name: bolt
    address: 127.0.0.1:$PROXY_PORT
    protocol: bolt
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: { path: { prefix: "/" } }
            cluster: bolt_server
clusters:
  - name: bolt_server
    protocol: bolt
    endpoints: ["127.0.0.1:$SERVER_PORT"]
YAML
"${PIN_PROXY[@]}" "$SIDECAR" --config "$TMP/sidecar.yaml" >"$TMP/sidecar.log" 2>&1 &
SIDECAR_PID=$!
PIDS+=("$SIDECAR_PID")
wait_port "$PROXY_PORT"

echo "bolt-rust: server 127.0.0.1:$SERVER_PORT, sidecar 127.0.0.1:$PROXY_PORT (pid $SIDECAR_PID), $ROUNDS rounds of ${DURATION_MS} ms, $CONCURRENCY in flight on each of $CONNECTIONS connection(s)"

# run_load MODE PORT [rpc-load run options...]
run_load() {
  local mode=$1 port=$2 extra=()
  shift 2
  case "$mode" in proxy*) extra=(--cpu-pid "$SIDECAR_PID" --clk-tck "$CLK_TCK") ;; esac
  if ! "${PIN_LOAD[@]}" "$RPC_LOAD" run --addr "127.0.0.1:$port" --label "$mode" \
      --duration-ms "$DURATION_MS" --warmup-ms "$WARMUP_MS" \
      --payload-bytes "$PAYLOAD_BYTES" "${extra[@]}" "$@"; then
    die "$mode run failed (sidecar log: $(tail -5 "$TMP/sidecar.log"))"
  fi
}

: >"$TMP/results"
for round in $(seq 1 "$ROUNDS"); do
  many=(--connections "$CONNECTIONS" --concurrency "$CONCURRENCY")
  run_load direct "$SERVER_PORT" "${many[@]}" | tee -a "$TMP/results"
  run_load proxy "$PROXY_PORT" "${many[@]}" | tee -a "$TMP/results"
  if [ "$ONE_AT_A_TIME" = 1 ]; then
    run_load direct-1 "$SERVER_PORT" --one-at-a-time | tee -a "$TMP/results"
    run_load proxy-1 "$PROXY_PORT" --one-at-a-time | tee -a "$TMP/results"
  fi
done

# The medians per mode.
awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    delete f
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    m = f["mode"]
    if (!(m in seen)) { seen[m] = 1; order[++modes] = m }
    rate[m] = rate[m] " " f["calls_per_sec"]; p50[m] = p50[m] " " f["p50_ms"]
    p99[m] = p99[m] " " f["p99_ms"]
    if ("proxy_cpu_us_per_call" in f) cpu[m] = cpu[m] " " f["proxy_cpu_us_per_call"]
  }
  END {
    print ""
    print "| path | calls/s (median) | p50 ms | p99 ms | proxy CPU us/call |"
    print "|---|---|---|---|---|"
    for (k = 1; k <= modes; k++) {
      m = order[k]
      printf "| %s | %s | %s | %s | %s |\n", m, median(rate[m]), median(p50[m]), median(p99[m]), (m in cpu) ? median(cpu[m]) : "-"
    }
    if (("direct" in seen) && ("proxy" in seen))
      printf "\nsidecar/direct throughput: %.3f\n", median(rate["proxy"]) / median(rate["direct"])
    if (("direct-1" in seen) && ("proxy-1" in seen))
      printf "sidecar/direct one at a time: %.3f\n", median(rate["proxy-1"]) / median(rate["direct-1"])
  }
' "$TMP/results"
