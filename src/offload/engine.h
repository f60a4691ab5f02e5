// OffloadEngine: runs a model whose weights and KV cache are spread over GPU memory, pinned DRAM
// and the NVMe offload directory as a planner::Policy says, with the zig-zag block schedule
// (offload/plan.h): layer by layer, GPU batch by GPU batch, weights prefetched two layers ahead
// over PCIe (disk parts read into pinned staging first), KV of CPU-resident batches attended on
// the CPU next to it while the GPU works on other batches. It is a compute::SequenceModel, so the
// Generator drives it one step of a whole block at a time. It owns every buffer it allocates
// (exactly planner::plan_memory's list), through its components (offload/engine_impl.h). Not
// thread safe: one step at a time; it runs its own worker threads inside a step.
// Units: bytes, seconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "compute/sequence_model.h"
#include "model/config.h"
#include "model/weight_source.h"
#include "offload/accounting.h"
#include "planner/policy.h"
#include "storage/fault_injection.h"

namespace strata::offload {

struct OffloadOptions {
  planner::Policy policy;
  // Where weights and KV placed on the disk tier live (files strata creates and removes).
  std::filesystem::path offload_dir;
  // Weights made on the GPU from this seed (synthetic benchmark weights, uniform in
  // [-0.02, 0.02), norms 1) instead of read from the WeightSource.
  std::optional<uint64_t> synthetic_seed;
  bool trace = false;  // keep per-resource spans for write_trace()
  // Faults injected into the engine's disk I/O (tests of a failing offload disk).
  std::vector<storage::FaultRule> io_faults;
};

class OffloadEngine final : public compute::SequenceModel {
 public:
  // Places the weights (reading `source`, or making them when options.synthetic_seed is set; then
  // `source` may be null), allocates plan_memory's buffers, and starts the workers. `backend` must
  // be a CUDA backend; CPU attention runs on `pool` unless the GPU has nearer CPUs. All three
  // outlive the engine. Errors name the tier, the buffer and the budget that does not fit, or the
  // offload file that cannot be written.
  static Result<std::unique_ptr<OffloadEngine>> create(const model::ModelConfig& config,
                                                       model::WeightSource* source,
                                                       const OffloadOptions& options,
                                                       compute::Backend& backend, ThreadPool& pool,
                                                       Logger& log);
  ~OffloadEngine() override;

  const model::ModelConfig& config() const override;
  compute::Backend& backend() override;
  // slots <= the policy's block, max_len <= prompt_len + gen_len of the policy's workload.
  Status reset(int32_t slots, int32_t max_len) override;
  // The same KV rows (each GPU batch's gbs x (prompt_len + gen_len)) cut into pages of
  // planner::paged_kv_page_len positions; the arguments are ignored (the policy fixed the size). A GPU batch holds up to gbs * planner::kPagedSequencesPerSlot sequences
  // (and takes up to gbs prompts a step).
  Result<compute::PageLayout> reset_paged(int64_t rows, int32_t page_len) override;
  Result<Tensor> forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) override;
  // The logits stay on the GPU.
  Result<Tensor> forward_for_sampling(const compute::TokenBatch& batch, std::span<const int32_t> rows) override;
  // Where every attention runs on the GPU (the KV all on the GPU, or the policy's attention on
  // the GPU), after a reset: a decode step takes prompt tokens beside its running sequences, each
  // GPU batch up to a prompt step's tokens (gbs x prompt_len) in all.
  bool mixed_steps() const override;
  int64_t mixed_step_prompt_tokens() const override;

  const planner::Policy& policy() const;
  OffloadReport report() const;
  void reset_report();
  // Chrome/Perfetto trace JSON, one track per resource (needs options.trace).
  Status write_trace(const std::filesystem::path& path) const;

 private:
  OffloadEngine();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::offload
