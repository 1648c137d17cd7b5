#!/usr/bin/env bash
# Installs the third-party Bolt and Dubbo peers proxy-codec's interop tests drive
# (proxy-codec/tests/interop/package.json, versions pinned by its package-lock.json):
# sofa-rpc-node and sofa-bolt-node (Bolt client and server), dubbo2.js (Dubbo client),
# js-remoting-for-apache-dubbo (the Dubbo protocol for sofa-rpc-node's server); and
# from PyPI (requirements.txt) dubbo-ssl-python, a second, independent Dubbo client.
#
# Everything goes to $PROXY_CODEC_NODE_DEPS, by default
# ${CARGO_TARGET_DIR:-<repo>/target}/test-deps/proxy-codec (node_modules/ and python/),
# never into the source tree. Idempotent: `npm ci` and `pip install --target` run only
# when their pinned lists changed since the last install. Installs node, npm, python3
# and pip with apt-get when missing (Debian, root or sudo); prints a loud WARNING
# instead of failing when it cannot, and the tests that need them skip loudly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/proxy-codec/tests/interop"
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
DEST="${PROXY_CODEC_NODE_DEPS:-$TARGET/test-deps/proxy-codec}"

warn() {
  echo "==================================================================" >&2
  echo "proxy-codec deps: WARNING: $*" >&2
  echo "proxy-codec deps: the Bolt/Dubbo interop tests will be SKIPPED" >&2
  echo "==================================================================" >&2
}

APT_UPDATED=0
# apt_install PKG...: installs Debian packages; false (after a WARNING) when it cannot.
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    warn "no apt-get: install $* by hand"
    return 1
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo -n)
    else
      warn "not root and no sudo: install $* by hand"
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ "$APT_UPDATED" -eq 0 ]; then
    "${sudo[@]}" apt-get update -qq || { warn "apt-get update failed"; return 1; }
    APT_UPDATED=1
  fi
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" || { warn "apt-get install $* failed"; return 1; }
}

mkdir -p "$DEST"

# === Python: dubbo-ssl-python (a second Dubbo client; its tests skip without it) ===
install_python() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "proxy-codec deps: python3 or pip missing, installing python3 and python3-pip"
    apt_install python3 python3-pip || return 0
  fi
  local stamp="$DEST/.installed-python.sha256" want
  want="$(sha256sum <"$SRC/requirements.txt" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$DEST/python/dubbo_ssl" ]; then
    echo "proxy-codec deps: python packages up to date in $DEST/python"
    return 0
  fi
  rm -rf "$DEST/python" "$stamp"
  # --target installs next to nothing else (no venv module needed, no system site).
  if python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
      --target "$DEST/python" -r "$SRC/requirements.txt"; then
    echo "$want" >"$stamp"
    echo "proxy-codec deps: installed $(tr '\n' ' ' <"$SRC/requirements.txt")into $DEST/python"
  else
    warn "pip install -r requirements.txt failed (only the dubbo-ssl-python test is affected)"
  fi
}
install_python

# === Node: the Bolt peers, dubbo2.js and the Dubbo server ===
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "proxy-codec deps: node or npm missing, installing nodejs and npm"
  apt_install nodejs npm || exit 0
fi

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 14 ]; then
  warn "node $(node --version 2>/dev/null || echo '?') is too old (need >= 14)"
  exit 0
fi
echo "proxy-codec deps: node $(node --version), npm $(npm --version 2>/dev/null)"

stamp="$DEST/.installed-lock.sha256"
want="$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d "$DEST/node_modules/sofa-rpc-node" ] \
   && [ -d "$DEST/node_modules/dubbo2.js" ]; then
  echo "proxy-codec deps: node packages up to date in $DEST"
  exit 0
fi

cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
rm -f "$stamp"
if (cd "$DEST" && npm ci --no-audit --no-fund --loglevel=error); then
  echo "$want" >"$stamp"
  echo "proxy-codec deps: installed $(ls "$DEST/node_modules" | wc -l) packages into $DEST/node_modules"
else
  warn "npm ci failed in $DEST"
  exit 0
fi
