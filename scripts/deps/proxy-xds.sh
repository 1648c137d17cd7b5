#!/usr/bin/env bash
# Installs the independent control plane for proxy-xds's integration tests: a Python
# ADS server (proxy-xds/tests/control_plane/ads_server.py) on `grpcio` and the
# pre-generated Envoy protos of `xds-protos`, both from PyPI. The tests start it,
# push resources through it and read the ACKs and NACKs it saw.
#
# Goes into a virtualenv at $PROXY_XDS_VENV, by default
# ${CARGO_TARGET_DIR:-<repo>/target}/test-deps/xds-venv; when python3 has no venv
# module (and it cannot be installed), into <that dir>/site with
# `pip install --target` instead. Idempotent: nothing is downloaded when the pinned
# versions are already importable there. Needs python3 (>= 3.9) on x86_64 or
# aarch64 Linux (grpcio's manylinux wheels).
set -euo pipefail

GRPCIO_VERSION=1.85.0
XDS_PROTOS_VERSION=1.85.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${PROXY_XDS_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/test-deps/xds-venv}"
PACKAGES=("grpcio==$GRPCIO_VERSION" "xds-protos==$XDS_PROTOS_VERSION")
LABEL="proxy-xds deps"
WHAT="the control-plane interop tests"

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" - >/dev/null 2>&1 <<PY
import sys
from importlib.metadata import version
import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
sys.exit(0 if version("grpcio") == "$GRPCIO_VERSION" and version("xds-protos") == "$XDS_PROTOS_VERSION" else 1)
PY
}

# shellcheck source=lib/python-venv.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/python-venv.sh"
python_venv_install
