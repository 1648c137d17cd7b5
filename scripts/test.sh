#!/usr/bin/env bash
# The project's test command: installs the external test clients, then runs every
# test target of the workspace (unit, integration, examples, benches in test mode)
# and the doctests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
for tool in curl h2load; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "=================================================================="
    echo "WARNING: $tool not installed: the tests that need it will be SKIPPED"
    echo "=================================================================="
  fi
done

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast
else
  echo "test.sh: cargo-nextest not installed; using cargo test"
  cargo test --workspace --all-targets --no-fail-fast
fi

# proxy-filters' OTLP span exporter (feature `otel`, off in the workspace run) against
# a collector on 127.0.0.1: one more build of proxy-filters and this one test.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run -p proxy-filters --features otel --test trace_otlp
else
  cargo test -p proxy-filters --features otel --test trace_otlp
fi

# nextest does not run doctests.
cargo test --workspace --doc
