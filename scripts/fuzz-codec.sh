#!/usr/bin/env bash
# Runs proxy-codec's cargo-fuzz targets (Bolt and Dubbo frames, the hessian2 reader,
# the sniffer) for a bounded time each: scripts/fuzz.sh with FUZZ_CRATE=proxy-codec.
# Not part of CI (.ci/run). See proxy-codec/fuzz/README.md.
#   bash scripts/fuzz-codec.sh                    # every target, 60 s each
#   FUZZ_SECONDS=600 bash scripts/fuzz-codec.sh   # longer
#   bash scripts/fuzz-codec.sh sniff              # only the named target(s)
set -euo pipefail
FUZZ_CRATE=proxy-codec exec bash "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh" "$@"
