#!/usr/bin/env bash
# Where a proxy's CPU per request goes: user time (the proxy's own code) against
# system time (the kernel's, which on loopback includes the receive path of the peer
# the proxy writes to). Runs one round of the shared harness and samples the proxy's
# utime and stime from /proc over SECONDS_SAMPLED of the measured run.
#
#   bench/cpu-split/split.sh sidecar target/release/sidecar --config bench/sidecar-bench.yaml
#   bench/cpu-split/split.sh nginx
#
# Prints the harness's RESULT line and one line (requests in the sampled window
# taken as the run's mean rate times its length)
#   SPLIT name=.. user_us_per_req=.. sys_us_per_req=.. user_pct=..
# Same environment as the harness (CONNS, PROTO, ...). Loopback only; the machine
# must be otherwise idle, as for any benchmark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HARNESS=${HARNESS:-../shared/bench/proxy-bench.sh}
NAME=$1
shift
WARMUP_S=${WARMUP:-3s}
WARMUP_S=${WARMUP_S%s}
SECONDS_SAMPLED=${SECONDS_SAMPLED:-5}
PROXY_CPU=${PROXY_CPU:-1}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

if [[ $# -gt 0 ]]; then
  "$HARNESS" "$NAME" -- "$@" >"$OUT" 2>/dev/null &
  PROC=$(basename "$1")
else
  "$HARNESS" "$NAME" >"$OUT" 2>/dev/null &
  PROC=$NAME
fi
HARNESS_PID=$!

# The measured run starts after the proxy is up and warmed up; sample inside it.
sleep $((WARMUP_S + 4))
pid=
for p in $(pgrep -x "$PROC" || true); do
  # The proxy is the process pinned to the proxy's core (an nginx upstream is not).
  if [[ $(taskset -pc "$p" 2>/dev/null | awk '{print $NF}') == "$PROXY_CPU" ]]; then
    pid=$p
  fi
done
[[ -n $pid ]] || { echo "no $PROC process on CPU $PROXY_CPU" >&2; exit 1; }
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
read -r u0 s0 < <(ticks "$pid")
sleep "$SECONDS_SAMPLED"
read -r u1 s1 < <(ticks "$pid")
wait "$HARNESS_PID"

result=$(grep '^RESULT' "$OUT")
echo "$result"
rps=$(grep -o 'rps=[0-9.]*' <<<"$result" | cut -d= -f2)
hz=$(getconf CLK_TCK)
awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v rps="$rps" \
    -v secs="$SECONDS_SAMPLED" -v name="$NAME" 'BEGIN {
  req = rps * secs
  printf "SPLIT name=%s user_us_per_req=%.2f sys_us_per_req=%.2f user_pct=%.0f\n",
    name, u / hz / req * 1e6, s / hz / req * 1e6, 100 * u / (u + s)
}'
