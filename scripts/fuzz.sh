#!/usr/bin/env bash
# Runs a crate's cargo-fuzz targets (<crate>/fuzz; proxy-core unless FUZZ_CRATE names
# another, e.g. FUZZ_CRATE=proxy-codec or proxy-tls) for a bounded time each.
# Not part of CI (.ci/run): run it by hand. See <crate>/fuzz/README.md.
#
#   bash scripts/fuzz.sh                    # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh   # longer
#   bash scripts/fuzz.sh http1_chunked      # only the named target(s)
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_MAX_LEN    libFuzzer -max_len (default 65536)
#   FUZZ_SANITIZER  address | none | ... (default: address, or none when the
#                   address-sanitizer build fails on this toolchain)
#   FUZZ_DEBUG_ASSERTIONS  1 (default) builds with debug assertions and overflow
#                   checks (cargo fuzz -a); 0 builds as plain release
#
# The seeds under <crate>/fuzz/seeds/<target>/ are read-only inputs; what the
# fuzzer finds goes to <crate>/fuzz/corpus/<target>/ (scratch, git-ignored),
# crashes to <crate>/fuzz/artifacts/<target>/ and logs to <crate>/fuzz/logs/.
# Exits non-zero if any target crashed (or failed to run), naming the artifacts.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
FUZZ_MAX_LEN="${FUZZ_MAX_LEN:-65536}"
FUZZ_DEBUG_ASSERTIONS="${FUZZ_DEBUG_ASSERTIONS:-1}"
CRATE="${FUZZ_CRATE:-proxy-core}"
[ -d "$CRATE/fuzz" ] || { echo "fuzz.sh: no $CRATE/fuzz" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked || {
    echo "fuzz.sh: could not install cargo-fuzz" >&2
    exit 2
  }
fi
echo "fuzz.sh: $(cargo fuzz --version)"

# Only the stable toolchain is installed; cargo-fuzz needs unstable rustc flags
# (-Zsanitizer=..., sanitizer coverage options).
export RUSTC_BOOTSTRAP=1

# cargo fuzz looks for ./fuzz, so run it from the crate directory.
cd "$CRATE" || exit 2
FUZZ_DIR=fuzz
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi
mkdir -p "$FUZZ_DIR/logs"

BUILD_FLAGS=()
if [ "$FUZZ_DEBUG_ASSERTIONS" = "1" ]; then
  BUILD_FLAGS+=(--debug-assertions)
fi

if [ -n "${FUZZ_SANITIZER:-}" ]; then
  SANITIZER="$FUZZ_SANITIZER"
  echo "fuzz.sh: building with --sanitizer $SANITIZER"
  if ! cargo fuzz build "${BUILD_FLAGS[@]}" --sanitizer "$SANITIZER"; then
    echo "fuzz.sh: build failed" >&2
    exit 2
  fi
else
  SANITIZER=address
  echo "fuzz.sh: building with --sanitizer address"
  if ! cargo fuzz build "${BUILD_FLAGS[@]}" --sanitizer address \
    >"$FUZZ_DIR/logs/build-address.log" 2>&1; then
    tail -n 20 "$FUZZ_DIR/logs/build-address.log"
    echo "fuzz.sh: the address-sanitizer build failed; falling back to --sanitizer none"
    SANITIZER=none
    if ! cargo fuzz build "${BUILD_FLAGS[@]}" --sanitizer none; then
      echo "fuzz.sh: build failed" >&2
      exit 2
    fi
  fi
fi

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  seeds="$FUZZ_DIR/seeds/$target"
  corpus="$FUZZ_DIR/corpus/$target"
  artifacts="$FUZZ_DIR/artifacts/$target"
  log="$FUZZ_DIR/logs/$target.log"
  if [ ! -d "$seeds" ]; then
    echo "fuzz.sh: no seeds for unknown target '$target' ($seeds)" >&2
    failed+=("$target (unknown target)")
    continue
  fi
  mkdir -p "$corpus" "$artifacts"
  before="$(ls -1 "$artifacts" 2>/dev/null | sort)"

  echo
  echo "=== $target: ${FUZZ_SECONDS}s, sanitizer $SANITIZER ==="
  # The first corpus directory is the one libFuzzer writes new inputs to: the
  # scratch corpus; the seeds are only read.
  cargo fuzz run "${BUILD_FLAGS[@]}" --sanitizer "$SANITIZER" "$target" "$corpus" "$seeds" -- \
    -max_total_time="$FUZZ_SECONDS" -max_len="$FUZZ_MAX_LEN" -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?

  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}')"
  summary+=("$target: rc=$rc execs=${execs:-?} ${done_line:-(no DONE line)}")
  grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|Done [0-9]+ runs)' "$log"

  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz.sh: $target FAILED (exit $rc); full log: $CRATE/$log"
    new="$(comm -13 <(echo "$before") <(ls -1 "$artifacts" 2>/dev/null | sort))"
    written="$(grep -oE 'Test unit written to [^ ]+' "$log" | sed 's/^Test unit written to //')"
    for f in $written; do
      case "$f" in
        /*) echo "fuzz.sh: artifact: $f" ;;
        *) echo "fuzz.sh: artifact: $PWD/${f#./}" ;;
      esac
    done
    for f in $new; do
      echo "fuzz.sh: new file in $PWD/$artifacts: $f"
      echo "fuzz.sh: reproduce: (cd $CRATE && RUSTC_BOOTSTRAP=1 cargo fuzz run ${BUILD_FLAGS[*]} --sanitizer $SANITIZER $target $artifacts/$f)"
    done
    failed+=("$target")
  fi
done

echo
echo "=== summary (sanitizer $SANITIZER, ${FUZZ_SECONDS}s per target) ==="
for line in "${summary[@]}"; do
  echo "$line"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz.sh: no crashes"
