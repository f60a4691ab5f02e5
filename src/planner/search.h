// The policy search: for each compression choice, attention placement, GPU batch size and number
// of GPU batches, solve the placement LP (cost_model.h times, memory_plan.h estimates) with Clp,
// round the fractions to whole tensors, re-check the exact memory plan against the budgets, and
// keep the policy with the shortest job (or the highest tokens/s without a request count).
// Pure: no I/O, no threads, no CUDA. Thread safe (separate calls share nothing).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "planner/cost_model.h"
#include "planner/hardware.h"
#include "planner/memory_plan.h"
#include "planner/model_spec.h"
#include "planner/policy.h"

namespace strata::planner {

// What the runtime can place: the LP keeps the fractions it cannot run at zero.
// What placements the search may choose (an engine that cannot run some narrows them).
struct PlacementLimits {
  bool kv_on_disk = true;
  bool compressed_kv_on_gpu = true;
  bool compressed_kv_gpu_attention = true;  // attention on the GPU over int4 KV kept off the GPU
  bool activations_on_cpu = true;
};

struct SearchOptions {
  std::vector<Compression> weight_compression = {Compression::kNone};  // candidates to try
  std::vector<Compression> kv_compression = {Compression::kNone};
  std::vector<Attention> attention = {Attention::kCpu, Attention::kGpu};
  std::vector<int64_t> gpu_batch_sizes;  // empty: 1, 2, 4, 8, 16, 24, ..., 1024
  std::vector<int64_t> num_gpu_batches;  // empty: 1, 2, 3, 4, 6, 8, ..., 64
  PlacementLimits limits;
  int runners_up = 0;  // how many of the next best candidates PlanResult keeps
};

struct PlanResult {
  Policy policy;
  Placement placement;
  MemoryPlan memory;
  int64_t lps_solved = 0;
  int64_t candidates_feasible = 0;
  // The next best candidates (other batch shapes, compression or attention choices, each with its
  // own placement), best first: up to SearchOptions::runners_up of them.
  std::vector<Policy> runners_up;
};

// Default budgets for a machine: GPU memory less 1 GiB for the CUDA context, DRAM less 10%
// (at least 4 GiB) for the OS and strata's own heap, 95% of the disk.
Budgets default_budgets(const HardwareProfile& hw);

// The best policy; kInfeasible says which tier is short and by how much.
Result<PlanResult> plan_policy(const ModelSpec& spec, const Workload& workload,
                               const HardwareProfile& hw, const Budgets& budgets,
                               const SearchOptions& options);

// Realises a given policy (e.g. a hand-written one), checks its memory, and predicts its times.
Result<PlanResult> evaluate_policy(const ModelSpec& spec, const Policy& policy,
                                   const HardwareProfile& hw, const Budgets& budgets);

// Solves the placement LP of one candidate (no rounding): the optimal fractions, or kInfeasible.
// `budget_cut` lowers each tier's budget (bytes), as the search does after a rounding overshoot.
Result<Fractions> solve_placement_lp(const ModelSpec& spec, const Workload& workload,
                                     const HardwareProfile& hw, const Budgets& budgets,
                                     const BatchShape& batch, const Choices& choices,
                                     const std::array<double, kNumTiers>& budget_cut = {},
                                     const PlacementLimits& limits = {});

}  // namespace strata::planner
