#!/usr/bin/env bash
# HTTP/3 against HTTP/2 over TLS through the same proxy stack, on this machine:
# request throughput and the proxy's CPU per request.
#
# One proxy process (proxy-quic/examples/h3_bench.rs `proxy`, one thread) serves
# HTTP/3 (H3Listener, UDP) and HTTP/2 over TLS (HttpListener + proxy-tls
# TerminationLayer, TCP) on the same port, both into proxy-core's router and proxy
# to one HTTP/1.1 upstream (`upstream`, 1 KiB answers) in another process. Then,
# for each protocol in turn, a load client runs for SECONDS: h2load for HTTP/2
# (`--npn-list h2`), and for HTTP/3 the example's `load` mode (the h3 crate on
# quinn; Debian's h2load is built without HTTP/3), each with CONNS connections of
# STREAMS requests in flight.
#
# CPU per request is measured as in shared/bench: the proxy's utime+stime from
# /proc/PID/stat over the run, divided by the requests completed. The proxy runs
# on CPU PROXY_CPU, the load client and upstream on LOAD_CPU (taskset, when
# there are two CPUs or more).
#
# Usage: bench/quic/h3-vs-h2.sh            (SECONDS=10 CONNS=4 STREAMS=10)
#        SECONDS_PER_RUN=5 bench/quic/h3-vs-h2.sh
# Prints one line per protocol:
#   RESULT proto=h3 requests=N errors=E seconds=S req_per_s=R cpu_us_per_req=U
# Needs: cargo, h2load (nghttp2-client), taskset. Builds the example once in
# release mode. Everything started is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECS="${SECONDS_PER_RUN:-10}"
CONNS="${CONNS:-4}"
STREAMS="${STREAMS:-10}"
LISTEN="${LISTEN:-127.0.0.1:18443}"
UPSTREAM="${UPSTREAM:-127.0.0.1:18181}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release/examples/h3_bench"

for tool in cargo h2load; do
  command -v "$tool" >/dev/null || { echo "h3-vs-h2: $tool is needed" >&2; exit 1; }
done
pin() { # $1 = cpu, then the command
  local cpu="$1"; shift
  # exec: a background `pin ... &` is then the process itself, so $! is its PID.
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

(cd "$ROOT" && cargo build --release -q -p proxy-quic --example h3_bench)

pin "$LOAD_CPU" "$BIN" upstream "$UPSTREAM" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
pin "$PROXY_CPU" "$BIN" proxy "$LISTEN" "$UPSTREAM" "$TMP" >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 100); do
  [ -s "$TMP/cert.pem" ] && grep -q listening "$TMP/proxy.log" && grep -q listening "$TMP/upstream.log" && break
  sleep 0.1
done
grep -q listening "$TMP/proxy.log" || { echo "h3-vs-h2: the proxy did not start:" >&2; cat "$TMP/proxy.log" >&2; exit 1; }

grep -q h3_bench "/proc/$PROXY_PID/comm" \
  || { echo "h3-vs-h2: PID $PROXY_PID is not the proxy" >&2; exit 1; }
TICK="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PROXY_PID/stat"; }

# $1 = proto, $2 = requests, $3 = errors, $4 = seconds, $5 = cpu ticks used
result() {
  awk -v p="$1" -v n="$2" -v e="$3" -v s="$4" -v t="$5" -v hz="$TICK" 'BEGIN {
    rps = (s > 0) ? n / s : 0; us = (n > 0) ? t / hz * 1e6 / n : 0
    printf "RESULT proto=%s requests=%d errors=%d seconds=%.2f req_per_s=%.0f cpu_us_per_req=%.1f\n", p, n, e, s, rps, us }'
}

run_h2() {
  local before after out n ok s
  before="$(cpu_ticks)"
  out="$(pin "$LOAD_CPU" h2load --npn-list h2 -D "$SECS" -c "$CONNS" -m "$STREAMS" "https://$LISTEN/" 2>&1)"
  after="$(cpu_ticks)"
  n="$(awk '/^requests:/ { print $8 }' <<<"$out")"      # "N succeeded"
  ok="$(awk '/^requests:/ { print $2 }' <<<"$out")"     # "N total"
  s="$(awk '/^finished in/ { sub(/s,$/, "", $3); print $3 }' <<<"$out")"
  grep -q "h2" <<<"$(grep -i 'application protocol' <<<"$out")" \
    || { echo "h3-vs-h2: h2load did not negotiate h2:" >&2; echo "$out" >&2; exit 1; }
  result h2 "${n:-0}" "$(( ${ok:-0} - ${n:-0} ))" "${s:-$SECS}" "$(( after - before ))"
}

run_h3() {
  local before after out n e s
  before="$(cpu_ticks)"
  out="$(pin "$LOAD_CPU" "$BIN" load "$LISTEN" "$TMP/cert.pem" "$SECS" "$CONNS" "$STREAMS" 2>&1)"
  after="$(cpu_ticks)"
  n="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")"
  e="$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$out")"
  s="$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")"
  [ -n "$n" ] || { echo "h3-vs-h2: the HTTP/3 load client failed:" >&2; echo "$out" >&2; exit 1; }
  result h3 "$n" "$e" "$s" "$(( after - before ))"
}

echo "h3-vs-h2: ${SECS}s per protocol, $CONNS connections x $STREAMS streams, proxy on CPU $PROXY_CPU" >&2
run_h2
run_h3
