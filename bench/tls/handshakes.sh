#!/usr/bin/env bash
# Full TLS 1.3 handshakes per server CPU-second: the sidecar terminating TLS against
# nginx terminating TLS, ECDSA P-256 and RSA-2048, the same key and certificate and
# the same client load for both.
#
#   bench/tls/handshakes.sh target/release/sidecar [RAW_OUT]
#
# Setup (loopback only, 127.0.0.1):
#   - upstream: nginx, 1 worker, on 127.0.0.1:18081 answering `GET /` with 200 "ok",
#     pinned to LOAD_CPU (0) with the client;
#   - server under test on 127.0.0.1:18443, pinned to SERVER_CPU (1), one worker:
#     the sidecar (a listener with the `tls` network filter, routing to the upstream)
#     or nginx (`listen ssl`, proxy_pass to the same upstream with keep-alive). Both:
#     TLS 1.3 only, no session tickets, no session cache, so every connection is a
#     full handshake;
#   - client: `wrk -t1 -c$CONNS -d${SECS}s -H "Connection: close"` over https (every
#     request is a new connection, a new full handshake), pinned to LOAD_CPU, after a
#     2 s warm-up.
# Per run: handshakes/s (wrk's requests/s; each request is its own connection) and
# server CPU per handshake (utime+stime from /proc/PID/stat of the server's
# processes over the wrk window, divided by wrk's request count). ROUNDS rounds
# (default 3), the servers alternated, medians printed at the end. Every process it
# starts is stopped by PID on exit; its files live in one temp dir that is removed.
set -euo pipefail

SIDECAR=${1:?usage: handshakes.sh SIDECAR_BIN [RAW_OUT]}
RAW=${2:-/dev/null}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
CONNS=${CONNS:-32}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
KEYS=${KEYS:-"ecdsa rsa"}
SIDECAR=$(readlink -f "$SIDECAR")
for t in nginx wrk openssl taskset curl awk; do
  command -v $t >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/tls-handshakes.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# ---- certificates: one self-signed certificate per key type, for a.test
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=a.test -addext subjectAltName=DNS:a.test \
  -keyout "$TMP/ecdsa.key" -out "$TMP/ecdsa.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
  -subj /CN=a.test -addext subjectAltName=DNS:a.test \
  -keyout "$TMP/rsa.key" -out "$TMP/rsa.pem" 2>/dev/null

nginx_common() {
  cat <<C
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 65536; }
http {
  access_log off;
  client_body_temp_path $1/cb; proxy_temp_path $1/pt; fastcgi_temp_path $1/ft;
  uwsgi_temp_path $1/ut; scgi_temp_path $1/st;
  keepalive_requests 1000000000;
  tcp_nodelay on;
C
}

# ---- upstream
mkdir -p "$TMP/up"
{ nginx_common "$TMP/up"; cat <<C
  server { listen 127.0.0.1:18081 backlog=4096; location / { return 200 "ok"; } }
}
C
} >"$TMP/up/nginx.conf"
taskset -c "$LOAD_CPU" nginx -p "$TMP/up/" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
for _ in $(seq 50); do curl -fs http://127.0.0.1:18081/ >/dev/null && break; sleep 0.1; done

server_pids() {  # PID -> the PID and its children (nginx workers)
  echo "$1"; pgrep -P "$1" || true
}
cpu_ticks() {  # PIDs... -> utime+stime summed, in clock ticks
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo $t
}
HZ=$(getconf CLK_TCK)

run_one() {  # NAME KEY ROUND
  local name=$1 key=$2 round=$3 d="$TMP/$1-$2"
  mkdir -p "$d"
  if [[ $name == sidecar ]]; then
    cat >"$d/sidecar.yaml" <<C
runtime: { worker_threads: 1 }
listeners:
  - name: tls
    address: 127.0.0.1:18443
    protocol: http1
    network_filters:
      - typed: tls
        config:
          certificates: [{ cert: $TMP/$key.pem, key: $TMP/$key.key }]
          versions: [tls13]
          alpn: [http/1.1]     # as nginx without http2; wrk offers no ALPN
          session: { tickets: false, cache: false }
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - name: all
            match: { path: { prefix: "/" } }
            cluster: upstream
clusters:
  - name: upstream
    endpoints: ["127.0.0.1:18081"]
    pool: { max_idle: 1024 }
C
    taskset -c "$SERVER_CPU" "$SIDECAR" --config "$d/sidecar.yaml" >"$d/out.log" 2>&1 &
  else
    { nginx_common "$d"; cat <<C
  upstream up { server 127.0.0.1:18081; keepalive 1024; }
  server {
    listen 127.0.0.1:18443 ssl backlog=4096;
    ssl_certificate $TMP/$key.pem;
    ssl_certificate_key $TMP/$key.key;
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
C
    } >"$d/nginx.conf"
    taskset -c "$SERVER_CPU" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' &
  fi
  local pid=$!
  PIDS+=($pid)
  local ok=
  for _ in $(seq 100); do
    if curl -fsk --resolve a.test:18443:127.0.0.1 https://a.test:18443/ >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [[ -n $ok ]] || { echo "$name ($key) did not answer" >&2; cat "$d"/*.log >&2; exit 1; }
  # the client's view of the handshake, once
  local proto
  proto=$(echo | openssl s_client -connect 127.0.0.1:18443 -servername a.test 2>/dev/null \
    | awk '/^New, /{print $2, $NF} /Server public key is/{print "key", $5}' | tr '\n' ' ')
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -H "Connection: close" https://127.0.0.1:18443/ >/dev/null
  local pids; pids=$(server_pids "$pid")
  local t0 t1 out
  # shellcheck disable=SC2086
  t0=$(cpu_ticks $pids)
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" -H "Connection: close" https://127.0.0.1:18443/)
  # shellcheck disable=SC2086
  t1=$(cpu_ticks $pids)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local n errs
  n=$(awk '/ requests in /{print $1}' <<<"$out")
  errs=$(awk '/Socket errors|Non-2xx/{$1=$1; printf "%s; ", $0}' <<<"$out")
  {
    echo "## round $round $name $key ($proto)"
    echo "$out"
  } >>"$RAW"
  awk -v name="$name" -v key="$key" -v round="$round" -v n="$n" -v secs="$SECS" \
      -v ticks=$((t1 - t0)) -v hz="$HZ" -v errs="$errs" 'BEGIN {
    cpu = ticks / hz
    printf "RESULT name=%s key=%s round=%d handshakes=%d handshakes_per_s=%.0f server_cpu_s=%.2f server_cpu_us_per_handshake=%.1f handshakes_per_cpu_s=%.0f errors=\"%s\"\n",
      name, key, round, n, n / secs, cpu, cpu * 1e6 / n, n / cpu, errs }' | tee -a "$RAW"
}

for key in $KEYS; do
  for round in $(seq "$ROUNDS"); do
    for name in sidecar nginx; do
      run_one "$name" "$key" "$round"
      sleep 1
    done
  done
done

echo "## medians ($ROUNDS rounds, ${SECS}s, $CONNS connections)" | tee -a "$RAW"
grep '^RESULT' "$RAW" | awk '
  { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["name"] " " f["key"]; c[k]++; hs[k, c[k]] = f["handshakes_per_s"]; us[k, c[k]] = f["server_cpu_us_per_handshake"]; keys[k] = 1 }
  function med(a, k, n,   i, j, t, v) { for (i = 1; i <= n; i++) v[i] = a[k, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((n + 1) / 2)] }
  END { for (k in keys) { u = med(us, k, c[k]); printf "MEDIAN %s handshakes_per_s=%s server_cpu_us_per_handshake=%s handshakes_per_cpu_s=%.0f\n", k, med(hs, k, c[k]), u, 1e6 / u } }' \
  | sort | tee -a "$RAW"
