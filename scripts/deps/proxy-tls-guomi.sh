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
PACKAGES=("tongsuopy==$TONGSUOPY_VERSION")
LABEL="proxy-tls guomi deps"
WHAT="the Tongsuo interop tests"

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" -c "import sys, tongsuopy; sys.exit(0 if tongsuopy.__version__ == '$TONGSUOPY_VERSION' else 1)" \
    >/dev/null 2>&1
}

# shellcheck source=lib/python-venv.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/python-venv.sh"
python_venv_install
