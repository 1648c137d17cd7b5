#!/usr/bin/env bash
# Installs the external clients the integration tests drive: curl and h2load/nghttp
# (Debian package nghttp2-client). Idempotent: a tool already on PATH is not
# reinstalled, and when everything is present this only prints what it found.
# Needs Debian (apt-get) and root, or sudo. Tests that need a missing tool skip loudly,
# so a machine where this cannot install still runs the rest of the suite.
set -euo pipefail

# tool on PATH -> Debian package that provides it
declare -A PKG_OF=(
  [curl]=curl
  [h2load]=nghttp2-client
  [nghttp]=nghttp2-client
)

missing_pkgs=()
for tool in curl h2load nghttp; do
  if command -v "$tool" >/dev/null 2>&1; then
    echo "install-test-deps: $tool present ($(command -v "$tool"))"
  else
    pkg=${PKG_OF[$tool]}
    echo "install-test-deps: $tool missing (package $pkg)"
    case " ${missing_pkgs[*]-} " in
      *" $pkg "*) ;;
      *) missing_pkgs+=("$pkg") ;;
    esac
  fi
done

run_crate_scripts() {
  local dir
  dir="$(dirname "${BASH_SOURCE[0]}")/deps"
  for f in "$dir"/*.sh; do
    [ -e "$f" ] || continue
    echo "install-test-deps: $f"
    bash "$f"
  done
}
trap run_crate_scripts EXIT

if [ "${#missing_pkgs[@]}" -eq 0 ]; then
  echo "install-test-deps: nothing to install"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: WARNING: no apt-get; install ${missing_pkgs[*]} by hand (tests needing them will be SKIPPED)" >&2
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "install-test-deps: WARNING: not root and no sudo; install ${missing_pkgs[*]} by hand (tests needing them will be SKIPPED)" >&2
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: apt-get update"
"${SUDO[@]}" apt-get update -qq
echo "install-test-deps: apt-get install ${missing_pkgs[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}"

for tool in curl h2load nghttp; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-test-deps: ERROR: $tool still missing after install" >&2
    exit 1
  fi
done
echo "install-test-deps: done"
