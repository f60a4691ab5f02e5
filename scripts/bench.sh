#!/usr/bin/env bash
# make bench: the micro-benchmarks (JSON lines to bench/out/, a table on stdout).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/bench/out"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
"$build/bench/strata_microbench" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$root/bench/out/microbench-$commit.json" --benchmark_out_format=json \
  --benchmark_context=commit="$commit"
