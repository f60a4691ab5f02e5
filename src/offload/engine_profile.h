// The fixed GPU time of the offloading engine per (layer, GPU batch), measured through the engine
// itself for the hardware profile's gpu.fixed: engines over a tiny synthetic Llama-shaped model
// (so kernel launches and small ops dominate its layers) with hand-made policies, everything on
// the GPU (prefill and decode layers) and KV on the CPU with attention there (the split decode
// layer), at several layer counts. Per engine, the GPU's busy seconds per prefill step and per
// decode step (OffloadReport) against layers x GPU batches is fitted to a per-step cost plus a cost
// per (layer, GPU batch) (planner::fit_fixed_plus_rate), whose slope is the fixed cost. Not thread
// safe; needs a CUDA backend and runs nothing else on it meanwhile. Units: seconds, microseconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "planner/hardware.h"
#include "planner/profile_fit.h"

namespace strata::offload {

struct EngineFixedOptions {
  std::vector<int64_t> layer_counts = {2, 6};  // one engine per count and policy
  int64_t gpu_batch_size = 2, num_gpu_batches = 3;
  int64_t prompt_len = 8;
  int64_t decode_steps = 8;           // timed decode steps per engine, after one warm-up step
  std::filesystem::path offload_dir;  // the engine's files (none with these policies)
};
EngineFixedOptions engine_fixed_options(bool quick, const std::filesystem::path& offload_dir);

struct EngineFixedCosts {
  planner::GpuFixedCosts fixed;  // the slopes, in microseconds per (layer, GPU batch)
  // seconds per step = fixed_s + (layers x GPU batches) / rate, and the samples each was fitted to
  // (x: layers x GPU batches, seconds: GPU busy seconds per step).
  planner::FixedPlusRate prefill, decode, decode_split;
  std::vector<planner::TimedCall> prefill_samples, decode_samples, decode_split_samples;
  // CPU attention's cost per call inside the engine (the worker's busy seconds per decode step of
  // the split engines against layers x GPU batches): what a call costs beyond its KV bytes there.
  double cpu_attention_call_us = 0;
  planner::FixedPlusRate cpu_attention;
  std::vector<planner::TimedCall> cpu_attention_samples;
  std::string text;  // the fits, their quality and their samples
};

// `progress` (may be empty) sees (what, engines done, engines in all). Errors: the backend is not
// a CUDA backend, an engine cannot be built or run (the message names the policy), a fit fails.
Result<EngineFixedCosts> measure_engine_fixed_costs(
    compute::Backend& cuda_backend, ThreadPool& pool, const EngineFixedOptions& options,
    Logger& log, const std::function<void(const std::string& what, int done, int total)>& progress);

}  // namespace strata::offload
