#!/usr/bin/env bash
# Writes the sidecar's link order (examples/sidecar/link-order.txt): the functions a
# representative run executes, hottest first, which the release build places side by
# side (`--symbol-ordering-file`, see examples/sidecar/build.rs). The kernel maps a
# binary's code in 64 KiB blocks around each page first touched, so code that runs
# scattered over the whole text maps most of it; packed, it maps a fraction.
#
# The run: the sidecar on bench/sidecar-bench.yaml under callgrind (which records
# every function executed), start-up, `bench/representative-load.sh` (HTTP/1.1
# keep-alive at 50 and 1,000 connections and close, h2c, an unknown route, a
# malformed request), the admin-less shutdown on SIGTERM; nginx as upstream.
#
#   cargo build --release -p sidecar && bench/link-order/profile.sh target/release/sidecar
#
# Symbols are matched by their mangled names, whose hash changes with the crate's
# build metadata (its version, features and those of its dependencies): a change to
# Cargo.lock or to features can rename most of them. Names missing from the binary
# are skipped by the linker, so a stale list only packs less (idle RSS 6.1 MiB with a
# fresh list, 8.9 with one from before a dependency change, 10.7 with none). Rerun
# it before a release build that is measured or shipped, then build again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=../representative-load.sh
. bench/representative-load.sh
BIN=${1:?usage: profile.sh path/to/sidecar}
OUT=${OUT:-examples/sidecar/link-order.txt}
require valgrind nginx wrk h2load curl python3
TMP=$(mktemp -d)
cleanup() { stop_upstream "$TMP"; rm -rf "$TMP"; }
trap cleanup EXIT

start_upstream "$TMP"

valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$TMP/cg.out" \
  "$BIN" --config bench/sidecar-bench.yaml 2>"$TMP/vg.log" &
PID=$!
wait_for_sidecar
representative_load
kill -TERM "$PID"
wait "$PID" || true

# callgrind names each function once ("fn=(id) name" or "cfn=(id) name"), then refers to it by id; the
# self cost follows on the cost lines (the line after "calls=" is a call's inclusive
# cost, not the caller's own). Sum self cost per function, hottest first.
python3 - "$TMP/cg.out" "$OUT" <<'PY'
import re, sys
names, cost, cur, in_call = {}, {}, None, False
fn = re.compile(r"^fn=\((\d+)\)(?: (.*))?$")
cfn = re.compile(r"^cfn=\((\d+)\) (.*)$")
with open(sys.argv[1]) as f:
    for line in f:
        m = fn.match(line)
        if m:
            cur, in_call = m.group(1), False
            if m.group(2):
                names[cur] = m.group(2).strip()
        elif line.startswith("cfn="):
            m = cfn.match(line)
            if m:
                names[m.group(1)] = m.group(2).strip()
        elif line.startswith("calls="):
            in_call = True
        elif line[:1].isdigit() or line[:1] in "+-":
            if in_call:
                in_call = False
            elif cur is not None:
                parts = line.split()
                if len(parts) > 1:
                    cost[cur] = cost.get(cur, 0) + int(parts[1])
ranked = sorted(cost, key=lambda i: -cost[i])
with open(sys.argv[2], "w") as out:
    for i in ranked:
        out.write(names[i] + "\n")
PY
echo "$(wc -l <"$OUT") functions in $OUT"
