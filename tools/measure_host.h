// The host's side of `strata profile`: DRAM read bandwidth with every core, CPU GEMM through the
// CPU backend, the CPU attention kernel's arithmetic and int4 unpacking rates, and CPU attention
// per call (compute::host_kv_attention, the offloading engine's kernel) over a grid of sequences
// per call and context lengths, fitted to fixed + per sequence + KV bytes / rate. Each function
// allocates its own buffers and runs on the pool it is given; not for use while other work runs.
// Units: bytes, seconds, GB/s (1e9 B/s), GFLOP/s, TFLOP/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "measure_common.h"
#include "planner/hardware.h"
#include "planner/profile_fit.h"

namespace strata::tools {

// DRAM read bandwidth: `threads` threads each sum a slice of a buffer of `bytes`; the best of
// three passes, GB/s.
double measure_dram_gbps(uint64_t bytes, int threads);

// CPU GEMM through the CPU backend's linear(): [512, 4096] x [4096, 4096]^T with `weight_dtype`
// weights, the best of three, TFLOP/s.
Result<double> measure_cpu_gemm_tflops(compute::Backend& backend, DType weight_dtype);

// The CPU attention kernel's throughput on one call of 32 sequences x 512 positions, head_dim 128:
// fp16 KV with 64 query / 8 kv heads in GFLOP/s (4 FLOPs per query element per position), and
// int4-g64 KV with 32 heads of their own in billions of KV elements unpacked per second.
struct CpuAttentionRates {
  double gflops = 0;
  double int4_gelems = 0;
};
// Calls take turns over caches spread through `arena_bytes` of memory, so their KV comes from DRAM.
Result<CpuAttentionRates> measure_cpu_attention_rates(ThreadPool& pool,
                                                      uint64_t arena_bytes = uint64_t{512} << 20);

// The grid of CPU attention calls: every (sequences, context) pair, one new token per sequence
// attending to `context` positions, with the head layout below, for fp16 and for int4 KV.
struct CpuAttentionGrid {
  std::vector<int64_t> sequences = {1, 4, 16, 64};
  std::vector<int64_t> contexts = {128, 512, 2048};
  int64_t heads = 32, kv_heads = 8, head_dim = 128;
  int repetitions = 5;  // timed calls per point after a warm-up call; the median counts
  // Memory the calls' caches are spread over, taken in turn so that each call reads its KV from
  // DRAM as the engine's do (at least two of the largest call's caches).
  uint64_t arena_bytes = uint64_t{512} << 20;
};
// The grid `strata profile` uses: quick has the one above, full every power of two.
CpuAttentionGrid cpu_attention_grid(bool quick);

struct CpuAttentionCalls {
  planner::CpuAttentionCost fp16, int4;
  std::vector<planner::TimedAttention> fp16_samples, int4_samples;
  double fp16_rms = 0, int4_rms = 0;  // rms relative error of each fit over its samples
  std::string text;                   // the fits, their quality and their samples
};
// Times the grid on `pool` and fits cpu.attention_fp16 and cpu.attention_int4 with
// planner::fit_cpu_attention. kInvalidArgument for an empty grid or one whose KV cannot be
// allocated, or when a fit fails (it names the fit).
Result<CpuAttentionCalls> measure_cpu_attention_calls(ThreadPool& pool,
                                                      const CpuAttentionGrid& grid,
                                                      const ProgressFn& progress);

}  // namespace strata::tools
