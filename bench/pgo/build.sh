#!/usr/bin/env bash
# Builds the sidecar with profile-guided optimisation: an instrumented build, the
# representative run (`bench/representative-load.sh`) on it, then the release build
# compiled with what that run counted. LLVM then lays each function's blocks out by
# how often they ran, and keeps the code that did not run apart from the code that
# did: the request path touches fewer instruction-cache lines (BENCHMARKS.md,
# session 27).
#
#   bench/pgo/build.sh        # writes target/pgo/release/sidecar
#
# Needs llvm-profdata of the LLVM that rustc is built on (`rustc -vV`; on Debian,
# `apt-get install llvm-22` for LLVM 22), and nginx, wrk, h2load and curl for the
# run. Takes two release builds (each in its own target directory, so that the plain
# `target/release` build is left as it is). The profile is of this source: build
# again after a change to the code or the dependencies.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../representative-load.sh
. bench/representative-load.sh
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA=${PROFDATA:-$(command -v "llvm-profdata-$llvm" || command -v llvm-profdata || true)}
if [[ -z $PROFDATA ]] || ! "$PROFDATA" --version | grep -q "LLVM version $llvm\."; then
  echo "needs llvm-profdata for LLVM $llvm (rustc's): apt-get install llvm-$llvm, or set PROFDATA" >&2
  exit 1
fi
require nginx wrk h2load curl
OUT=$PWD/target/pgo
TMP=$(mktemp -d)
cleanup() { stop_upstream "$TMP"; rm -rf "$TMP"; }
trap cleanup EXIT

CARGO_TARGET_DIR=target/pgo-instrumented RUSTFLAGS="-Cprofile-generate=$TMP/counts" \
  cargo build --release -p sidecar
# The build scripts ran instrumented too: only the sidecar's run is kept.
rm -rf "$TMP/counts"

start_upstream "$TMP"
target/pgo-instrumented/release/sidecar --config bench/sidecar-bench.yaml 2>"$TMP/run.log" &
PID=$!
wait_for_sidecar
representative_load
kill -TERM "$PID"
wait "$PID" || true

mkdir -p "$OUT"
"$PROFDATA" merge -o "$OUT/sidecar.profdata" "$TMP/counts"
CARGO_TARGET_DIR=target/pgo RUSTFLAGS="-Cprofile-use=$OUT/sidecar.profdata" \
  cargo build --release -p sidecar
echo "built $OUT/release/sidecar"
