# The representative run shared by the release-build scripts (`link-order/profile.sh`,
# `pgo/build.sh`): what they learn from is what this sends. Sourced, not run.
#
# require TOOL...: exits naming the first tool missing.
# start_upstream DIR / stop_upstream DIR: an nginx upstream on 127.0.0.1:18081
# answering 1 KiB, as `bench/sidecar-bench.yaml`'s cluster expects.
# representative_load: start-up is the caller's; then HTTP/1.1 keep-alive at 50 and
# 1,000 connections (many timers at once, pool growth), `Connection: close`, h2c (10
# connections x 10 streams), an unknown route with a body, a malformed request. Timed
# rather than counted, so that each part keeps its share however fast the binary runs.

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
  done
}

start_upstream() {
  local dir=$1
  mkdir -p "$dir/up"
  cat >"$dir/up/nginx.conf" <<CONF
worker_processes 1; pid $dir/nginx.pid; error_log $dir/up/error.log;
events { worker_connections 4096; }
http { access_log off; default_type text/plain;
  server { listen 127.0.0.1:18081; location / { return 200 "$(head -c 1024 /dev/zero | tr '\0' x)"; } } }
CONF
  nginx -p "$dir/up/" -c "$dir/up/nginx.conf"
}

stop_upstream() {
  kill "$(cat "$1/nginx.pid" 2>/dev/null)" 2>/dev/null || true
}

wait_for_sidecar() {
  for _ in $(seq 1 600); do
    curl -fs -o /dev/null http://127.0.0.1:18080/ && return 0
    sleep 0.1
  done
  echo "the sidecar did not answer on 127.0.0.1:18080" >&2
  return 1
}

representative_load() {
  wrk -t1 -c50 -d5s http://127.0.0.1:18080/ >/dev/null
  wrk -t1 -c1000 -d5s http://127.0.0.1:18080/ >/dev/null
  wrk -t1 -c5 -d2s -H 'Connection: close' http://127.0.0.1:18080/ >/dev/null
  h2load -c10 -m10 -D 5 http://127.0.0.1:18080/ >/dev/null
  curl -s -o /dev/null http://127.0.0.1:18080/missing --data-binary 'body'
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080; printf "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" >&3; cat <&3' >/dev/null 2>&1 || true
}
