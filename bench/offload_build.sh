#!/usr/bin/env bash
# Builds the strata CLI (and optionally the CUDA tests) on a GPU host with CUDA, in build-gpu.
# Usage: bench/offload_build.sh [extra targets...]
set -euo pipefail
if [[ -f .deps/remote-setup.sh ]]; then source .deps/remote-setup.sh >/dev/null 2>&1; fi
if [[ ! -f build-gpu/CMakeCache.txt ]]; then
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
fi
cmake --build build-gpu --target strata "$@" -j"$(nproc)" 2>&1 | grep -E "error|Error" -A3 | head -40 || true
test -x build-gpu/tools/strata
