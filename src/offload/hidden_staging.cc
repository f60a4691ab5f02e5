#include "offload/hidden_staging.h"

#include <algorithm>

#include "common/check.h"
#include "offload/pinned.h"

namespace strata::offload {

Result<std::unique_ptr<HiddenStaging>> HiddenStaging::create(const planner::Placement& placement,
                                                             const BlockDims& dims, int64_t hidden,
                                                             compute::Backend& backend,
                                                             cuda::Lanes& lanes) {
  std::unique_ptr<HiddenStaging> h(new HiddenStaging(lanes));
  h->host_.resize(static_cast<size_t>(dims.batches));
  const int64_t rows = dims.gbs * std::max<int64_t>(dims.prefill_len, 1);
  const DType act = backend.activation_dtype();
  for (int64_t b = 0; b < dims.batches; ++b) {
    if (placement.activations[b] != planner::Tier::kCpu) continue;
    if (!h->staging_[0].defined())
      for (auto& t : h->staging_) {
        STRATA_ASSIGN_OR_RETURN(t, backend.allocate(act, {rows, hidden}));
      }
    const size_t bytes = static_cast<size_t>(rows * hidden) * dtype_size(act);
    STRATA_ASSIGN_OR_RETURN(h->host_[b], allocate_pinned_bytes(lanes, bytes, "activations.resident (cpu)", &h->pinned_bytes_));
  }
  return h;
}

void HiddenStaging::describe_to(StepShape* shape) const {
  shape->cpu_activations.resize(host_.size());
  for (size_t b = 0; b < host_.size(); ++b) shape->cpu_activations[b] = host_[b].defined();
}

void HiddenStaging::bind(Handlers& handlers, StepState& step) {
  handlers[static_cast<size_t>(ActionKind::kLoadHidden)].enqueue =
      [this, &step](const Action& a, cuda::Lane lane) -> Result<uint64_t> {
    Tensor staged = view(a.hidden_staging, step.subs[a.batch].batch.size());
    lanes_.copy(lane, staged.raw(), host_[a.batch].raw(), staged.bytes());
    step.x[a.batch] = staged;
    return staged.bytes();
  };
  handlers[static_cast<size_t>(ActionKind::kStoreHidden)].enqueue =
      [this, &step](const Action& a, cuda::Lane lane) -> Result<uint64_t> {
    const Tensor& staged = step.x[a.batch];
    STRATA_CHECK(staged.raw() == staging_[a.hidden_staging].raw(),
                 "offload: a batch's hidden states are not in their staging buffer");
    lanes_.copy(lane, host_[a.batch].raw(), staged.raw(), staged.bytes());
    return staged.bytes();
  };
}

}  // namespace strata::offload
