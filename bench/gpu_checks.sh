#!/usr/bin/env bash
# The GPU checks of the offloading engine and of sampling, then structured output end to end, in
# one go on a GPU host and within a few minutes (bench/cuda_run.sh runs the whole CUDA suite and
# the kernel benchmarks instead): builds strata and the two GPU test binaries in build-gpu, runs
# the offloading engine's tests (every placement, mixed steps, refills) and the CUDA tests of the
# logit statistics, adjustments, draws and attention, then bench/structured_e2e.sh (its table),
# and with MIX=1 `strata generate` on a Llama-3-8B-shaped length mix (600 requests, 8 layers,
# 8 GiB). Logs under $OUT (or bench/out), a handful of small files.
#   bench/gpu_checks.sh [TEST_FILTER_EXTRA]
set -uo pipefail
out=${OUT:-bench/out}
mkdir -p "$out"
if [[ -f .deps/remote-setup.sh ]]; then source .deps/remote-setup.sh >/dev/null 2>&1; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
  >"$out/build.log" 2>&1
if ! cmake --build build-gpu -j"$(nproc)" --target strata strata_offload_tests strata_cuda_tests >>"$out/build.log" 2>&1; then
  grep -E "error" -A3 "$out/build.log" | head -60
  exit 1
fi
echo "== built ($(elapsed))"

# Only the verdicts and the failures' own lines come back.
verdicts() { grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual|error" | head -120; }
{
  echo "-- offloading engine"
  timeout 240 build-gpu/tests/offload/strata_offload_tests --gtest_filter="OffloadEngine*:*Mixed*:*Finished*${1:+:$1}" 2>&1 | verdicts
  echo "-- CUDA: sampling and attention"
  timeout 180 build-gpu/tests/cuda/strata_cuda_tests \
    --gtest_filter="LogitStats*:LogitAdjust*:*Sampling*:Int4Kv*:*Attention*${1:+:$1}" 2>&1 | verdicts
} >"$out/tests.log" 2>&1
grep -E "FAILED|PASSED|^--" "$out/tests.log"
echo "== tests ($(elapsed))"

echo "== structured output end to end"
OUT=/tmp/gpu-checks-e2e timeout 360 bash bench/structured_e2e.sh >"$out/e2e.log" 2>&1
echo "rc=$? ($(elapsed))"
grep -E "^\||temperature" "$out/e2e.log"

if [[ ${MIX:-0} == 1 ]]; then
  echo "== Llama-3-8B-shaped length mix, 8 layers, 8 GiB"
  python3 bench/make_hf_job.py --shape llama-3-8b --layers 8 --requests 600 --prompt-min 64 --prompt-max 1024 \
    --tail 16:200:1024 --out /tmp/gpu-checks-mix >/dev/null 2>&1
  rm -f /tmp/gpu-checks-mix/out.jsonl
  timeout 150 build-gpu/tools/strata generate --model /tmp/gpu-checks-mix/model --input /tmp/gpu-checks-mix/job.jsonl \
    --output /tmp/gpu-checks-mix/out.jsonl --gpu-mem 8GiB --cpu-mem 40GiB --json-summary "$out/mix.json" \
    >"$out/mix.log" 2>&1
  echo "rc=$? ($(elapsed)), $(wc -l </tmp/gpu-checks-mix/out.jsonl) results"
  tail -6 "$out/mix.log"
fi
