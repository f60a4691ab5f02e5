// CpuAttention: decode attention over KV kept off the GPU, run on the CPU next to it while the
// GPU works on other batches. Per GPU batch, pinned buffers for the new queries and the outputs
// [S, heads * head_dim] and the new keys and values [S, kv_heads * head_dim] (fp16 bit
// patterns; S = gbs * planner::kPagedSequencesPerSlot, the most a decode step of paged KV holds); the thread pool it attends with: the CPUs nearest the GPU on a machine of several
// NUMA nodes (with the CPU worker's own thread bound there too), else the process's pool. Handles
// kQkvToHost (d2h: a batch's new q, k, v -> pinned) and kCpuAttention (CPU worker). Owns its
// buffers and pool. Not thread safe; its tasks run one at a time on the CPU worker. Units: bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/transformer.h"
#include "cuda/lanes.h"
#include "model/config.h"
#include "offload/executor.h"
#include "offload/kv_tiers.h"
#include "offload/step_state.h"
#include "offload/task_worker.h"

namespace strata::offload {

class CpuAttention {
 public:
  // With `enabled` false (no KV off the GPU, or attention on the GPU) nothing is allocated and no
  // handler is bound. `near_cpus` are the CPUs nearest the GPU (empty: leave threads unbound).
  static Result<std::unique_ptr<CpuAttention>> create(bool enabled, const model::ModelConfig& config,
                                                      const BlockDims& dims,
                                                      const std::vector<int>& near_cpus,
                                                      ThreadPool& default_pool, TaskWorker& worker,
                                                      cuda::Lanes& lanes, Logger& log);

  // The attention output of GPU batch `b`, pinned [gbs, heads * head_dim] fp16.
  const Tensor& output(int32_t b) const { return io_[static_cast<size_t>(b)].out; }
  void bind(Handlers& handlers, const StepState& step, const KvTiers& kv,
            const compute::Transformer& model);
  uint64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  struct BatchIo {
    Tensor q, k, v, out;  // pinned: [gbs, q_dim] / [gbs, kv_dim] fp16 bit patterns
  };
  CpuAttention(cuda::Lanes& lanes, ThreadPool& pool) : lanes_(lanes), pool_(&pool) {}
  Status bind_near(const std::vector<int>& cpus, ThreadPool& default_pool, TaskWorker& worker,
                   Logger& log);

  cuda::Lanes& lanes_;
  ThreadPool* pool_;                        // near_pool_, or the process's
  std::unique_ptr<ThreadPool> near_pool_;   // on the CPUs nearest the GPU
  std::vector<BatchIo> io_;                 // [batches]
  uint64_t pinned_bytes_ = 0;
};

}  // namespace strata::offload
