#!/usr/bin/env bash
# Installs the independent HTTP/3 client for proxy-quic's interop test: PyPI's
# `aioquic` (QUIC and HTTP/3 in Python, its own TLS 1.3), driven by
# proxy-quic/tests/aioquic/h3_client.py.
#
# Goes into a virtualenv at $PROXY_QUIC_AIOQUIC_VENV, by default
# ${CARGO_TARGET_DIR:-<repo>/target}/test-deps/aioquic-venv; when python3 has no
# venv module (and it cannot be installed), into <that dir>/site with
# `pip install --target` instead. Idempotent: nothing is downloaded when the pinned
# version is already importable there. Needs python3 (>= 3.9) and the binary wheels
# of aioquic and its dependencies (cryptography, pylsqpack) for the platform.
set -euo pipefail

AIOQUIC_VERSION=1.7.2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${PROXY_QUIC_AIOQUIC_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/test-deps/aioquic-venv}"

warn() {
  echo "==================================================================" >&2
  echo "proxy-quic deps: WARNING: $*" >&2
  echo "proxy-quic deps: the aioquic HTTP/3 interop tests will be SKIPPED" >&2
  echo "==================================================================" >&2
}

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" -c "import sys, aioquic; sys.exit(0 if aioquic.__version__ == '$AIOQUIC_VERSION' else 1)" \
    >/dev/null 2>&1
}

if [ -x "$DEST/bin/python3" ] && has_version "$DEST/bin/python3"; then
  echo "proxy-quic deps: aioquic $AIOQUIC_VERSION present in $DEST"
  exit 0
fi
if [ -d "$DEST/site" ] && PYTHONPATH="$DEST/site" has_version python3; then
  echo "proxy-quic deps: aioquic $AIOQUIC_VERSION present in $DEST/site"
  exit 0
fi

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@"
}

if ! command -v python3 >/dev/null 2>&1; then
  echo "proxy-quic deps: python3 missing, installing it"
  apt_install python3 python3-venv python3-pip || { warn "no python3 and cannot install it"; exit 0; }
fi

mkdir -p "$(dirname "$DEST")"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
  echo "proxy-quic deps: python3 venv/ensurepip missing, installing python3-venv"
  apt_install python3-venv || true
fi

if python3 -m venv "$DEST" >/dev/null 2>&1 && [ -x "$DEST/bin/python3" ]; then
  "$DEST/bin/python3" -m pip install --quiet --disable-pip-version-check \
    "aioquic==$AIOQUIC_VERSION" || { warn "pip could not install aioquic"; exit 0; }
  has_version "$DEST/bin/python3" || { warn "aioquic does not import in $DEST"; exit 0; }
  echo "proxy-quic deps: installed aioquic $AIOQUIC_VERSION in $DEST"
  exit 0
fi

echo "proxy-quic deps: no usable venv, installing into $DEST/site"
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install python3-pip || { warn "no pip for python3"; exit 0; }
fi
rm -rf "$DEST"
python3 -m pip install --quiet --disable-pip-version-check --target "$DEST/site" \
  "aioquic==$AIOQUIC_VERSION" || { warn "pip could not install aioquic"; exit 0; }
PYTHONPATH="$DEST/site" has_version python3 || { warn "aioquic does not import from $DEST/site"; exit 0; }
echo "proxy-quic deps: installed aioquic $AIOQUIC_VERSION in $DEST/site"
