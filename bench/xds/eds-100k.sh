#!/usr/bin/env bash
# An EDS push of 100,000 endpoints to the sidecar (issue 11's scale benchmark):
#
#  - the time from the push to the first request routed by it (to cluster `big`,
#    empty before the push);
#  - the longest request stall while wrk loads another cluster through the same
#    worker during the update: wrk's max latency, with and without the push;
#  - the sidecar's RSS growth per 10,000 endpoints.
#
#   scripts/deps/proxy-xds.sh                          # the control plane's venv
#   cargo build --release -p sidecar
#   bench/xds/eds-100k.sh [target/release/sidecar]
#   ENDPOINTS=10000 bench/xds/eds-100k.sh             # a smoke run
#
# The control plane is proxy-xds's Python ADS server, run in the driver's process
# (bench/xds/driver.py): it builds a 100,000-endpoint ClusterLoadAssignment in about
# 0.2 s, off the measured time. The endpoints are 127.x.y.z:18091, all on loopback
# and served by one nginx listening on every address; `steady` is nginx on
# 127.0.0.1:18090. Env: ENDPOINTS (100000), WRK_SECS (8), PROXY_XDS_VENV. Needs nginx,
# wrk. Uses ports 18090, 18091, 18100 and 18101. Each result is one `RESULT` line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${1:-target/release/sidecar}
ENDPOINTS=${ENDPOINTS:-100000}
WRK_SECS=${WRK_SECS:-8}
VENV=${PROXY_XDS_VENV:-${CARGO_TARGET_DIR:-target}/test-deps/xds-venv}
PY=$VENV/bin/python3
[ -x "$PY" ] || { echo "no venv at $VENV: run scripts/deps/proxy-xds.sh" >&2; exit 1; }
TMP=$(mktemp -d)
cat > "$TMP/nginx.conf" <<CONF
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:18090; location / { return 200 "steady\n"; } }
  server { listen 18091; location / { return 200 "big\n"; } }
}
CONF
nginx -c "$TMP/nginx.conf"
cleanup() { kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
"$PY" bench/xds/driver.py "$BIN" --endpoints "$ENDPOINTS" --wrk-secs "$WRK_SECS"
