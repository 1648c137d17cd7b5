#!/usr/bin/env bash
# Installs Debian's redis-server, the Redis proxy-filters' redis_quota tests
# (proxy-filters/tests/redis_quota.rs) and the api-gateway's quota test
# (examples/api-gateway/tests/quota.rs) start on a loopback port of their own
# (proxy_test_support::redis::RedisServer: no persistence, killed when done). Only the
# binary is used: the packaged service is not needed, and is neither configured nor
# relied on. Idempotent: nothing is installed when redis-server is on PATH. Needs
# Debian (apt-get) and root, or sudo. When it cannot install, it fails with an ERROR:
# the tests that need redis-server fail (they do not skip) without it.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "proxy-filters-redis deps: redis-server present ($(redis-server --version | head -n1))"
  exit 0
fi

fail() {
  echo "==================================================================" >&2
  echo "proxy-filters-redis deps: ERROR: $*" >&2
  echo "proxy-filters-redis deps: the redis_quota tests FAIL without redis-server" >&2
  echo "==================================================================" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "no apt-get: install redis-server by hand"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: install redis-server by hand"
  SUDO=(sudo -n)
fi

export DEBIAN_FRONTEND=noninteractive
echo "proxy-filters-redis deps: apt-get update"
"${SUDO[@]}" apt-get update -qq || fail "apt-get update failed"
echo "proxy-filters-redis deps: apt-get install redis-server"
# policy-rc.d-less containers may fail to start the packaged service; the binary is
# all the tests need, so only its presence is checked below.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server || true
command -v redis-server >/dev/null 2>&1 || fail "apt-get install redis-server failed"
echo "proxy-filters-redis deps: installed $(redis-server --version | head -n1)"
