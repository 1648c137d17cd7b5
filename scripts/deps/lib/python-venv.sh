# Sourced by the scripts in scripts/deps/ that install a Python test client from PyPI
# (not run on its own: install-test-deps.sh runs only scripts/deps/*.sh).
#
#   LABEL="proxy-xds deps"               # prefix of every line printed
#   WHAT="the control-plane interop tests"
#   DEST=.../test-deps/xds-venv           # the virtualenv
#   PACKAGES=("grpcio==1.85.0" ...)       # pinned
#   has_version() { ... }                 # $1 = a python: exit 0 when the pins import
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/python-venv.sh"
#   python_venv_install
#
# Installs PACKAGES into a virtualenv at DEST; when python3 has no venv module (and
# it cannot be installed), into DEST/site with `pip install --target` instead.
# Idempotent: nothing is downloaded when has_version already holds there. Never
# fails the caller: when it cannot install, it prints a loud WARNING and the tests
# that need the client skip loudly.

python_venv_warn() {
  echo "==================================================================" >&2
  echo "$LABEL: WARNING: $*" >&2
  echo "$LABEL: $WHAT will be SKIPPED" >&2
  echo "==================================================================" >&2
}

python_venv_apt() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    sudo=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$@"
}

python_venv_install() {
  if [ -x "$DEST/bin/python3" ] && has_version "$DEST/bin/python3"; then
    echo "$LABEL: ${PACKAGES[*]} present in $DEST"
    return 0
  fi
  if [ -d "$DEST/site" ] && PYTHONPATH="$DEST/site" has_version python3; then
    echo "$LABEL: ${PACKAGES[*]} present in $DEST/site"
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "$LABEL: python3 missing, installing it"
    python_venv_apt python3 python3-venv python3-pip \
      || { python_venv_warn "no python3 and cannot install it"; return 0; }
  fi
  mkdir -p "$(dirname "$DEST")"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    echo "$LABEL: python3 venv/ensurepip missing, installing python3-venv"
    python_venv_apt python3-venv || true
  fi
  if python3 -m venv "$DEST" >/dev/null 2>&1 && [ -x "$DEST/bin/python3" ]; then
    "$DEST/bin/python3" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" \
      || { python_venv_warn "pip could not install ${PACKAGES[*]}"; return 0; }
    has_version "$DEST/bin/python3" \
      || { python_venv_warn "${PACKAGES[*]} do not import in $DEST"; return 0; }
    echo "$LABEL: installed ${PACKAGES[*]} in $DEST"
    return 0
  fi
  echo "$LABEL: no usable venv, installing into $DEST/site"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    python_venv_apt python3-pip || { python_venv_warn "no pip for python3"; return 0; }
  fi
  rm -rf "$DEST"
  python3 -m pip install --quiet --disable-pip-version-check --target "$DEST/site" "${PACKAGES[@]}" \
    || { python_venv_warn "pip could not install ${PACKAGES[*]}"; return 0; }
  PYTHONPATH="$DEST/site" has_version python3 \
    || { python_venv_warn "${PACKAGES[*]} do not import from $DEST/site"; return 0; }
  echo "$LABEL: installed ${PACKAGES[*]} in $DEST/site"
}
