#!/usr/bin/env bash
# Bolt throughput through the sidecar against a direct connection, in the same run.
#
# A sofa-rpc-node Bolt server (proxy-codec/tests/interop/server.js) and a bounded
# sofa-rpc-node load generator (load.js: CONCURRENCY echo calls in flight on CLIENTS
# connections for DURATION_MS after a warm-up) run ROUNDS rounds of: direct to the
# server, then through the sidecar (listener `protocol: bolt` -> cluster
# `protocol: bolt`, one worker thread). Each run prints a RESULT line; the end prints
# the medians and the proxy's CPU time per call (utime+stime of the sidecar during
# the measured window).
#
#   bash scripts/deps/proxy-codec.sh            # once: the Node peers
#   cargo build --release -p sidecar            # the sidecar with proxy_codec registered
#   bench/rpc/bolt-throughput.sh
#
# Environment: SIDECAR (default target/release/sidecar), ROUNDS (3), DURATION_MS
# (10000), WARMUP_MS (2000), CONCURRENCY (64), CLIENTS (1), PAYLOAD_BYTES (64),
# PROXY_CPU (1) and LOAD_CPU (0) for taskset pinning when taskset exists and the
# machine has 2+ CPUs, NODE_DEPS (target/test-deps/proxy-codec/node_modules).
# Everything started here is stopped by PID on exit; files live in one temp dir.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INTEROP="$ROOT/proxy-codec/tests/interop"
SIDECAR="${SIDECAR:-$ROOT/target/release/sidecar}"
ROUNDS="${ROUNDS:-3}"
DURATION_MS="${DURATION_MS:-10000}"
WARMUP_MS="${WARMUP_MS:-2000}"
CONCURRENCY="${CONCURRENCY:-64}"
CLIENTS="${CLIENTS:-1}"
PAYLOAD_BYTES="${PAYLOAD_BYTES:-64}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
export NODE_PATH="${NODE_DEPS:-$TARGET/test-deps/proxy-codec/node_modules}"

die() { echo "bolt-throughput: $*" >&2; exit 1; }
command -v node >/dev/null || die "node missing (bash scripts/deps/proxy-codec.sh)"
[ -d "$NODE_PATH/sofa-rpc-node" ] || die "sofa-rpc-node missing in $NODE_PATH (bash scripts/deps/proxy-codec.sh)"
[ -x "$SIDECAR" ] || die "no sidecar binary at $SIDECAR (cargo build --release -p sidecar, or SIDECAR=...)"

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

# A free loopback port, asked of the kernel.
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();})'
}

wait_port() {
  local port=$1 i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  die "nothing listens on 127.0.0.1:$port"
}

# The Bolt server.
"${PIN_LOAD[@]}" node "$INTEROP/server.js" --protocol bolt --name bench >"$TMP/server.out" 2>"$TMP/server.err" &
PIDS+=($!)
for _ in $(seq 1 200); do
  grep -q LISTENING "$TMP/server.out" 2>/dev/null && break
  sleep 0.05
done
SERVER_PORT="$(awk '/LISTENING/{print $2}' "$TMP/server.out")"
[ -n "$SERVER_PORT" ] || die "the Bolt server did not start: $(cat "$TMP/server.err")"

# The sidecar: one worker thread, Bolt in, Bolt out.
PROXY_PORT="$(free_port)"
cat >"$TMP/sidecar.yaml" <<EOF
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
EOF
"${PIN_PROXY[@]}" "$SIDECAR" --config "$TMP/sidecar.yaml" >"$TMP/sidecar.log" 2>&1 &
SIDECAR_PID=$!
PIDS+=("$SIDECAR_PID")
wait_port "$PROXY_PORT"

echo "bolt-throughput: server 127.0.0.1:$SERVER_PORT, sidecar 127.0.0.1:$PROXY_PORT (pid $SIDECAR_PID), $ROUNDS rounds of ${DURATION_MS} ms, concurrency $CONCURRENCY on $CLIENTS connection(s)"

run_load() {
  local mode=$1 port=$2 extra=()
  if [ "$mode" = proxy ]; then extra=(--cpu-pid "$SIDECAR_PID" --clk-tck "$CLK_TCK"); fi
  local out
  if ! out="$("${PIN_LOAD[@]}" node "$INTEROP/load.js" --target "127.0.0.1:$port" \
      --clients "$CLIENTS" --concurrency "$CONCURRENCY" --duration-ms "$DURATION_MS" \
      --warmup-ms "$WARMUP_MS" --payload-bytes "$PAYLOAD_BYTES" "${extra[@]}")"; then
    die "$mode run failed: $out (sidecar log: $(tail -5 "$TMP/sidecar.log"))"
  fi
  node -e '
    const r = JSON.parse(process.argv[1]);
    const f = [`mode=${process.argv[2]}`, `calls=${r.calls}`, `calls_per_sec=${r.callsPerSec}`,
      `p50_ms=${r.latencyMs.p50}`, `p99_ms=${r.latencyMs.p99}`, `errors=${r.errors}`];
    if (r.cpuUsPerCall !== null) f.push(`proxy_cpu_us_per_call=${r.cpuUsPerCall}`);
    console.log("RESULT " + f.join(" "));' "$out" "$mode"
}

: >"$TMP/results"
for round in $(seq 1 "$ROUNDS"); do
  run_load direct "$SERVER_PORT" | tee -a "$TMP/results"
  run_load proxy "$PROXY_PORT" | tee -a "$TMP/results"
done

node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
  const runs = lines.map(l => Object.fromEntries(l.replace(/^RESULT /, "").split(" ").map(kv => kv.split("="))));
  const median = xs => { const s = xs.map(Number).sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
  const by = mode => runs.filter(r => r.mode === mode);
  const d = by("direct"), p = by("proxy");
  const dRate = median(d.map(r => r.calls_per_sec)), pRate = median(p.map(r => r.calls_per_sec));
  console.log("");
  console.log("| path | calls/s (median) | p50 ms | p99 ms | proxy CPU us/call |");
  console.log("|---|---|---|---|---|");
  console.log(`| direct | ${dRate} | ${median(d.map(r => r.p50_ms))} | ${median(d.map(r => r.p99_ms))} | - |`);
  console.log(`| sidecar | ${pRate} | ${median(p.map(r => r.p50_ms))} | ${median(p.map(r => r.p99_ms))} | ${median(p.map(r => r.proxy_cpu_us_per_call))} |`);
  console.log(`\nsidecar/direct throughput: ${(pRate / dRate).toFixed(3)}`);
' "$TMP/results"
