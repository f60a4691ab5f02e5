// HiddenStaging: the hidden states of GPU batches the placement keeps on the CPU between their
// computations: one pinned buffer per such batch [gbs * prompt, hidden] (activation dtype), and
// two GPU staging buffers of the same shape that those batches take in turn (the plan says which).
// Handles kLoadHidden (h2d: pinned -> staging, which becomes the batch's hidden states) and
// kStoreHidden (d2h: staging -> pinned). Owns its buffers. Not thread safe. Units: bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "cuda/lanes.h"
#include "offload/executor.h"
#include "offload/step_state.h"
#include "planner/memory_plan.h"

namespace strata::offload {

class HiddenStaging {
 public:
  static Result<std::unique_ptr<HiddenStaging>> create(const planner::Placement& placement,
                                                       const BlockDims& dims, int64_t hidden,
                                                       compute::Backend& backend, cuda::Lanes& lanes);

  // The first `rows` rows of GPU staging buffer `staging`.
  Tensor view(int32_t staging, int64_t rows) const { return staging_[staging].slice_rows(0, rows); }
  void describe_to(StepShape* shape) const;  // cpu_activations
  void bind(Handlers& handlers, StepState& step);
  uint64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  HiddenStaging(cuda::Lanes& lanes) : lanes_(lanes) {}

  cuda::Lanes& lanes_;
  Tensor staging_[2];              // GPU [gbs * prompt, hidden], when any batch is kept on the CPU
  std::vector<Tensor> host_;       // [batches] pinned, same shape; undefined for GPU batches
  uint64_t pinned_bytes_ = 0;
};

}  // namespace strata::offload
