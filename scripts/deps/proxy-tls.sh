#!/usr/bin/env bash
# proxy-tls interop tests drive the `openssl` command line (s_client against the
# termination, s_server for origination) and curl (installed by the common script).
# Idempotent; prints a loud WARNING instead of failing when it cannot install.
set -uo pipefail

if command -v openssl >/dev/null 2>&1; then
  echo "deps/proxy-tls: openssl present ($(openssl version))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps/proxy-tls: WARNING: no apt-get; install openssl by hand (tests needing it will be SKIPPED)" >&2
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "deps/proxy-tls: WARNING: not root and no sudo; install openssl by hand (tests needing it will be SKIPPED)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq || true
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends openssl ca-certificates; then
  echo "deps/proxy-tls: WARNING: apt-get install openssl failed (tests needing it will be SKIPPED)" >&2
  exit 0
fi
command -v openssl >/dev/null 2>&1 && echo "deps/proxy-tls: installed $(openssl version)"
