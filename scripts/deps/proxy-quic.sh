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
PACKAGES=("aioquic==$AIOQUIC_VERSION")
LABEL="proxy-quic deps"
WHAT="the aioquic HTTP/3 interop tests"

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" -c "import sys, aioquic; sys.exit(0 if aioquic.__version__ == '$AIOQUIC_VERSION' else 1)" \
    >/dev/null 2>&1
}

# shellcheck source=lib/python-venv.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/python-venv.sh"
python_venv_install
