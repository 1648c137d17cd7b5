#!/usr/bin/env bash
# Installs the third-party Bolt and Dubbo peers proxy-codec's interop tests drive
# (proxy-codec/tests/interop/package.json, versions pinned by its package-lock.json):
# sofa-rpc-node and sofa-bolt-node (Bolt client and server), dubbo2.js (Dubbo client),
# js-remoting-for-apache-dubbo (the Dubbo protocol for sofa-rpc-node's server).
#
# node_modules goes to $PROXY_CODEC_NODE_DEPS, by default
# ${CARGO_TARGET_DIR:-<repo>/target}/test-deps/proxy-codec, never into the source tree.
# Idempotent: `npm ci` runs only when the lockfile changed since the last install.
# Installs node and npm with apt-get when they are missing (Debian, root or sudo);
# prints a loud WARNING instead of failing when it cannot, and the tests skip loudly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$ROOT/proxy-codec/tests/interop"
DEST="${PROXY_CODEC_NODE_DEPS:-${CARGO_TARGET_DIR:-$ROOT/target}/test-deps/proxy-codec}"

warn() {
  echo "==================================================================" >&2
  echo "proxy-codec deps: WARNING: $*" >&2
  echo "proxy-codec deps: the Bolt/Dubbo interop tests will be SKIPPED" >&2
  echo "==================================================================" >&2
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "proxy-codec deps: node or npm missing, installing nodejs and npm"
  if ! command -v apt-get >/dev/null 2>&1; then
    warn "no node/npm and no apt-get: install Node.js >= 18 and npm by hand"
    exit 0
  fi
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=(sudo -n)
    else
      warn "no node/npm, not root and no sudo: install nodejs and npm by hand"
      exit 0
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! { "${SUDO[@]}" apt-get update -qq &&
         "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nodejs npm; }; then
    warn "apt-get install nodejs npm failed"
    exit 0
  fi
fi

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 14 ]; then
  warn "node $(node --version 2>/dev/null || echo '?') is too old (need >= 14)"
  exit 0
fi
echo "proxy-codec deps: node $(node --version), npm $(npm --version 2>/dev/null)"

mkdir -p "$DEST"
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
