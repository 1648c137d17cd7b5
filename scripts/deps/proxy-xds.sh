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

warn() {
  echo "==================================================================" >&2
  echo "proxy-xds deps: WARNING: $*" >&2
  echo "proxy-xds deps: the control-plane interop tests will be SKIPPED" >&2
  echo "==================================================================" >&2
}

has_version() { # $1 = python, extra env in PYTHONPATH
  "$1" - >/dev/null 2>&1 <<PY
import sys
from importlib.metadata import version
import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
sys.exit(0 if version("grpcio") == "$GRPCIO_VERSION" and version("xds-protos") == "$XDS_PROTOS_VERSION" else 1)
PY
}

if [ -x "$DEST/bin/python3" ] && has_version "$DEST/bin/python3"; then
  echo "proxy-xds deps: grpcio $GRPCIO_VERSION and xds-protos $XDS_PROTOS_VERSION present in $DEST"
  exit 0
fi
if [ -d "$DEST/site" ] && PYTHONPATH="$DEST/site" has_version python3; then
  echo "proxy-xds deps: grpcio $GRPCIO_VERSION and xds-protos $XDS_PROTOS_VERSION present in $DEST/site"
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
  echo "proxy-xds deps: python3 missing, installing it"
  apt_install python3 python3-venv python3-pip || { warn "no python3 and cannot install it"; exit 0; }
fi

mkdir -p "$(dirname "$DEST")"
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
  echo "proxy-xds deps: python3 venv/ensurepip missing, installing python3-venv"
  apt_install python3-venv || true
fi

if python3 -m venv "$DEST" >/dev/null 2>&1 && [ -x "$DEST/bin/python3" ]; then
  "$DEST/bin/python3" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" \
    || { warn "pip could not install ${PACKAGES[*]}"; exit 0; }
  has_version "$DEST/bin/python3" || { warn "grpcio or xds-protos does not import in $DEST"; exit 0; }
  echo "proxy-xds deps: installed ${PACKAGES[*]} in $DEST"
  exit 0
fi

echo "proxy-xds deps: no usable venv, installing into $DEST/site"
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install python3-pip || { warn "no pip for python3"; exit 0; }
fi
rm -rf "$DEST"
python3 -m pip install --quiet --disable-pip-version-check --target "$DEST/site" "${PACKAGES[@]}" \
  || { warn "pip could not install ${PACKAGES[*]}"; exit 0; }
PYTHONPATH="$DEST/site" has_version python3 || { warn "grpcio or xds-protos does not import from $DEST/site"; exit 0; }
echo "proxy-xds deps: installed ${PACKAGES[*]} in $DEST/site"
