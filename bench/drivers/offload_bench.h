// The end-to-end offloading benchmark behind `strata bench --model-shape`: the OffloadEngine with
// synthetic weights, one block of seeded random prompts of exactly prompt_len tokens, greedy,
// gen_len tokens each (EOS ignored), measured through the Generator like a real job. Reports
// FlexGen's throughput metric (generated tokens / (prefill + decode time)), the prefill/decode
// split, each resource's busy fraction and bytes, peak memory per tier, and the planner's
// prediction beside the measurement. Not thread safe. Units: seconds, bytes, tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/config.h"
#include "planner/policy.h"
#include "offload/engine.h"
#include "runtime/context.h"
#include "runtime/generator.h"

namespace strata::bench {

struct OffloadBenchOptions {
  std::string model;                  // the shape's name, for the report
  planner::Workload workload;         // prompt_len, gen_len of every request
  std::filesystem::path offload_dir;  // the disk tier's files
  uint64_t seed = 0;                  // weights and prompts
  bool warmup = false;                // run one unmeasured block first
  std::filesystem::path trace;        // Chrome trace of the measured block; empty = none
};

struct ResourceBusy {
  std::string name;  // "gpu", "h2d", "d2h", "disk_read", "disk_write", "cpu_attention"
  double busy_s = 0;
  double busy_fraction = 0;  // busy_s / (prefill_s + decode_s) of the engine
  uint64_t bytes = 0;
};

struct OffloadBenchResult {
  std::string model, device;
  planner::Workload workload;
  planner::BatchShape batch;
  int64_t sequences = 0;  // the block: batch.block()
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int32_t decode_steps = 0;
  double prefill_s = 0;  // measured through the Generator (sampling included)
  double decode_s = 0;
  std::vector<ResourceBusy> resources;
  uint64_t peak_gpu_bytes = 0, pinned_bytes = 0, peak_rss_bytes = 0, disk_bytes = 0;
  planner::Prediction predicted;  // the policy's prediction for this workload
  offload::OffloadReport report;  // the engine's own report of the measured block

  double tokens_per_s() const;          // FlexGen's metric: generated / (prefill_s + decode_s)
  double prefill_tokens_per_s() const;  // prompt tokens / prefill_s
  // Tokens the decode steps produced (every sequence's first token comes from the prefill).
  double decode_tokens_per_s() const;
  double decode_step_s() const;  // decode_s / decode_steps
};

// Builds the engine for `policy` (already evaluated, predicted filled in) on ctx's CUDA backend,
// runs the optional warm-up block and the measured block, and collects the engine's report.
Result<OffloadBenchResult> run_offload_bench(const model::ModelConfig& config,
                                             const planner::Policy& policy,
                                             const OffloadBenchOptions& options, runtime::Context& ctx);

// The block of requests the benchmark runs: block() prompts of exactly prompt_len ids drawn
// uniformly from [4, vocab) with `seed`, greedy, max_new_tokens = gen_len, EOS ignored.
std::vector<runtime::GenerationRequest> bench_requests(int64_t count, const planner::Workload& workload,
                                              int32_t vocab, uint64_t seed);

// An aligned table: measured beside predicted with their ratio, then resources and memory.
std::string format_offload_bench(const OffloadBenchResult& r);
nlohmann::json offload_bench_json(const OffloadBenchResult& r);

}  // namespace strata::bench
