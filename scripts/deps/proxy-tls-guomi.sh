#!/usr/bin/env bash
# Installs the independent Guomi (RFC 8998) TLS peer for proxy-tls's interop test:
# the `tongsuopy` wheel from PyPI, which bundles Tongsuo (BabaSSL)'s libssl and
# libcrypto in one shared object. The test drives that libssl through ctypes
# (proxy-tls/tests/interop/tongsuo_peer.py).
#
# Goes into a virtualenv at $PROXY_TLS_GUOMI_VENV, by default
# ${CARGO_TARGET_DIR:-<repo>/target}/test-deps/tongsuo-venv; when python3 has no
# venv module (and it cannot be installed), into <that dir>/site with
# `pip install --target` instead. Idempotent: nothing is downloaded when the pinned
# version is already importable there. Needs python3 (>= 3.6) on x86_64 or aarch64
# Linux with glibc >= 2.27 (the manylinux_2_27 wheel).
set -euo pipefail

TONGSUOPY_VERSION=1.0.1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${PROXY_TLS_GUOMI_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/test-deps/tongsuo-venv}"

warn() {
  echo "==================================================================" >&2
  echo "proxy-tls guomi deps: WARNING: $*" >&2
  echo "proxy-tls guomi deps: the Tongsuo interop tests will be SKIPPED" >&2
  echo "==================================================================" >&2
}

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" -c "import sys, tongsuopy; sys.exit(0 if tongsuopy.__version__ == '$TONGSUOPY_VERSION' else 1)" \
    >/dev/null 2>&1
}

if [ -x "$DEST/bin/python3" ] && has_version "$DEST/bin/python3"; then
  echo "proxy-tls guomi deps: tongsuopy $TONGSUOPY_VERSION present in $DEST"
  exit 0
fi
if [ -d "$DEST/site" ] && PYTHONPATH="$DEST/site" has_version python3; then
  echo "proxy-tls guomi deps: tongsuopy $TONGSUOPY_VERSION present in $DEST/site"
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
  echo "proxy-tls guomi deps: python3 missing, installing it"
  apt_install python3 python3-venv python3-pip || { warn "no python3 and cannot install it"; exit 0; }
fi

mkdir -p "$(dirname "$DEST")"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
  echo "proxy-tls guomi deps: python3 venv/ensurepip missing, installing python3-venv"
  apt_install python3-venv || true
fi

if python3 -m venv "$DEST" >/dev/null 2>&1 && [ -x "$DEST/bin/python3" ]; then
  "$DEST/bin/python3" -m pip install --quiet --disable-pip-version-check \
    "tongsuopy==$TONGSUOPY_VERSION" || { warn "pip could not install tongsuopy"; exit 0; }
  has_version "$DEST/bin/python3" || { warn "tongsuopy does not import in $DEST"; exit 0; }
  echo "proxy-tls guomi deps: installed tongsuopy $TONGSUOPY_VERSION in $DEST"
  exit 0
fi

echo "proxy-tls guomi deps: no usable venv, installing into $DEST/site"
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install python3-pip || { warn "no pip for python3"; exit 0; }
fi
rm -rf "$DEST"
python3 -m pip install --quiet --disable-pip-version-check --target "$DEST/site" \
  "tongsuopy==$TONGSUOPY_VERSION" || { warn "pip could not install tongsuopy"; exit 0; }
PYTHONPATH="$DEST/site" has_version python3 || { warn "tongsuopy does not import from $DEST/site"; exit 0; }
echo "proxy-tls guomi deps: installed tongsuopy $TONGSUOPY_VERSION in $DEST/site"
