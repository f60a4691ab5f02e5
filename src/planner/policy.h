// Policy: what the planner decides and the runtime follows: the GPU batch size, the number of GPU
// batches per block, how much of the weights, the KV cache and the activations lives on each tier,
// compression, and where attention over off-GPU KV runs, with the planner's prediction. Also the
// inputs that shape it (Workload, Budgets). Read and written as the JSON in DESIGN.md.
// Plain values; pure functions, thread safe. Units: bytes, seconds, tokens.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "planner/model_spec.h"

namespace strata::planner {

enum class Tier { kGpu = 0, kCpu = 1, kDisk = 2 };
inline constexpr int kNumTiers = 3;
std::string_view tier_name(Tier t);  // "gpu", "cpu", "disk"

// Where attention over KV that is not on the GPU runs: on the CPU next to the KV (only the
// queries and outputs cross PCIe), or on the GPU after copying the KV there.
enum class Attention { kCpu, kGpu };
std::string_view attention_name(Attention a);  // "cpu", "gpu"

// The placement fractions, the LP's variables. Weights and KV split over three tiers, activations
// over two (they never go to disk).
enum Frac { kWg, kWc, kWd, kCg, kCc, kCd, kHg, kHc, kNumFracs };
using Fractions = std::array<double, kNumFracs>;

struct BatchShape {
  int64_t gpu_batch_size = 1;
  int64_t num_gpu_batches = 1;
  int64_t block() const { return gpu_batch_size * num_gpu_batches; }
};

// GPU slots for streamed weights: the unit computing and those loading ahead of it. Three keeps
// loads two layers ahead; two (one ahead) is the fallback when a third slot does not fit.
inline constexpr int kMaxPrefetchSlots = 3;
inline constexpr int kMinPrefetchSlots = 2;

struct Choices {
  Compression weights = Compression::kNone;
  Compression kv = Compression::kNone;
  Attention attention = Attention::kCpu;
  int prefetch_slots = kMaxPrefetchSlots;
};

// Requests of one prompt length and generation length within a job of mixed lengths.
struct LengthBucket {
  int64_t prompt_len = 0;
  int64_t gen_len = 0;
  int64_t count = 0;  // requests (with Workload::requests > 0), else a relative share
};

struct Workload {
  int64_t prompt_len = 0;  // the longest prompt: memory is planned for it
  int64_t gen_len = 0;     // the longest generation
  int64_t requests = 0;    // 0: as many as wanted (the plan maximises tokens/s)
  // The job's lengths, for a job of mixed lengths: blocks run one bucket's requests at a time, so
  // the time of the job is each bucket's blocks at that bucket's lengths. Empty: every request is
  // prompt_len + gen_len. Each bucket fits in prompt_len and gen_len; with requests > 0 the counts
  // add up to it.
  std::vector<LengthBucket> mix = {};
  // Continuous batching (a finished request's slot goes to the next waiting one): a bucket's
  // gen_len is then its requests' mean, its blocks count / block (not rounded up), and each
  // refill's prompt step reads the weights once more (see JobModel).
  bool continuous = false;
};

// Why a workload is malformed (lengths, counts, a mix outside the maximum lengths), or ok.
Status check_workload(const Workload& w);
// A workload for requests of the given (prompt, generation) lengths: up to `max_buckets` buckets
// of nearly equal counts by prompt length, each at its longest prompt and generation, or with
// `continuous` at its longest prompt and its mean generation (rounded up; the workload's gen_len
// stays the longest, which memory is planned for).
Workload workload_from_lengths(const std::vector<std::pair<int64_t, int64_t>>& lengths, int max_buckets,
                               bool continuous = false);

struct Budgets {
  uint64_t gpu = 0, cpu = 0, disk = 0;  // bytes strata may allocate on each tier
  uint64_t of(Tier t) const { return t == Tier::kGpu ? gpu : t == Tier::kCpu ? cpu : disk; }
};

// Seconds per layer that each resource is busy in one step of a block, and the binding bound.
struct PhaseTimes {
  std::vector<std::pair<std::string, double>> resources;  // disk_read, disk_write, h2d, ...
  std::vector<std::pair<std::string, double>> bounds;     // the overlap bounds (layer time = max)
  double layer_s = 0;
  std::string bottleneck;
};

struct Prediction {
  double tokens_per_s = 0;   // generated tokens per second (block * gen_len / block time)
  double prefill_s = 0;      // prefill of one block, all layers
  double decode_step_s = 0;  // one decode step of one block, all layers
  double block_s = 0;        // prefill + (gen_len - 1) decode steps
  double job_s = 0;          // every request (ceil(requests / block) blocks); 0 without requests
  std::string bottleneck;    // the binding bound of the phase that takes longer in total
  std::array<uint64_t, kNumTiers> bytes{};  // exact bytes allocated per tier
  PhaseTimes prefill, decode;
};

struct Policy {
  std::string model;
  Workload workload;
  BatchShape batch;
  Choices choices;
  // The fractions the placement is rounded from (planner::realise turns them into whole tensors
  // deterministically; the realised bytes are in predicted.bytes).
  Fractions fractions{};
  std::string hardware;  // name of the profile the prediction is for
  Budgets budgets;
  Prediction predicted;
};

nlohmann::json policy_to_json(const Policy& p);
// Parses a policy file's JSON; errors name `source` and the field.
Result<Policy> parse_policy(const nlohmann::json& j, const std::string& source);

}  // namespace strata::planner
