#!/usr/bin/env bash
# The CUDA backend's checks and benchmarks on a GPU host, in one go (logs under $OUT, or
# bench/out): build the CUDA targets, run the CUDA test suite (op consistency against the CPU
# backend, attention kernels, Hugging Face fixtures on the GPU), compare `strata complete` on
# --device cpu and --device cuda, then strata_cuda_bench and transformers' generate() baseline.
#   bench/cuda_run.sh [COMMIT] [full|quick|nohf|variants]
# variants: after the tests, the A/B timings of the kernel variants behind switches
# (cuda/device.h) instead of the benches.
set -uo pipefail
commit=${1:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mode=${2:-full}
out=${OUT:-bench/out}
mkdir -p "$out"
build=build-gpu
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_BENCH=ON >"$out/build.log" 2>&1
if ! cmake --build $build -j16 --target strata_cuda_tests strata_offload_tests strata_cuda_bench strata_gemv_sweep >>"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40
  exit 1
fi
cmake --build $build -j16 --target strata >>"$out/build.log" 2>&1 || echo "the strata CLI did not build (see build.log)"

echo "== CUDA tests"
{ $build/tests/cuda/strata_cuda_tests; $build/tests/offload/strata_offload_tests; } >"$out/tests.log" 2>&1
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|Failure|error|Expected|Which is|actual" "$out/tests.log" | head -60
tail -3 "$out/tests.log"

echo "== strata complete: cpu vs cuda"
if [ -x $build/tools/strata ]; then
  for fx in llama_gqa_llama3 opt_pre_ln qwen2_bias_tied mistral_window_head_dim; do
    args=(complete --model tests/data/fixtures/$fx --tokens "1 2 3 4 5" --tokens "7 8 9" --max-tokens 12 --ignore-eos)
    $build/tools/strata "${args[@]}" --device cpu >"$out/cpu_$fx.txt" 2>/dev/null
    $build/tools/strata "${args[@]}" --device cuda >"$out/cuda_$fx.txt" 2>/dev/null
    if cmp -s "$out/cpu_$fx.txt" "$out/cuda_$fx.txt"; then echo "$fx: same"; else echo "$fx: DIFFERENT"; diff "$out/cpu_$fx.txt" "$out/cuda_$fx.txt"; fi
  done >"$out/complete.log" 2>&1
  cat "$out/complete.log"
  rm -f "$out"/cpu_*.txt "$out"/cuda_*.txt
fi

if [ "$mode" = variants ]; then
  echo "== kernel variants behind switches (cuda/device.h): decode steps, each beside the default"
  for flags in "" "--no-cluster-merge" "--no-chain"; do
    echo "-- ${flags:-default}"
    # shellcheck disable=SC2086
    $build/bench/strata_cuda_bench --shapes llama-3-8b,opt-6.7b --batches 1,16 --int4-batches 1 $flags \
      --commit "$commit" 2>&1 | tee -a "$out/variants.log" | grep -E "decode step"
  done
  echo "== int4 GEMV at batch 1 and 2, every variant"
  $build/bench/strata_gemv_sweep --batches 1 --mma-batches 2 --commit "$commit" 2>&1 |
    tee "$out/gemv_b1.log" | grep -v '^{' | grep -i int4
  exit 0
fi
[ "$mode" = quick ] && exit 0
echo "== strata_cuda_bench"
# A small shape first: its decode step is nearly all host-side cost per layer.
$build/bench/strata_cuda_bench --shapes opt-125m --batches 1,16 --commit "$commit" 2>&1 | tee "$out/bench_small.log" | grep -E "decode step"
$build/bench/strata_cuda_bench --throughput --commit "$commit" 2>&1 | tee "$out/bench.log" | grep -v '^{'
echo "== skinny GEMV variants, weights streamed from HBM"
$build/bench/strata_gemv_sweep --commit "$commit" 2>&1 | tee "$out/gemv_sweep.log" | grep -v '^{'
echo "== decode with every op launched on its own (A/B of the op fusions)"
$build/bench/strata_cuda_bench --batches 1,16 --int4-batches 1 --no-fuse --commit "$commit" 2>&1 | tee "$out/bench_nofuse.log" | grep -E "decode step"
[ "$mode" = nohf ] && exit 0
echo "== transformers generate"
PYTHONUNBUFFERED=1 python3 bench/hf_generate_bench.py --shape llama-3-8b --commit "$commit" 2>"$out/hf.err" | tee "$out/hf.log"
tail -3 "$out/hf.err"
