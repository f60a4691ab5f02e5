// WeightSlots: the model's weights on their tiers (offload/weights.h) and what streaming them
// takes: GPU slots that streamed units (layers and the head whose weights are off the GPU) take
// in turn, the k-th streamed unit in slot k % slots as the plan's ring assigns them, and pinned
// staging for the disk parts of units on the disk. Handles kDiskRead (on the disk worker: a
// unit's disk part into staging) and kLoadWeights (on h2d: one part of a unit's pinned and staged
// bytes into its slot). Owns its buffers. Not thread safe; its disk tasks run one at a time on
// the disk worker. Units: bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "cuda/lanes.h"
#include "offload/executor.h"
#include "offload/plan.h"
#include "offload/weights.h"
#include "storage/io_backend.h"

namespace strata::offload {

using TensorMap = std::unordered_map<std::string, Tensor>;

class WeightSlots {
 public:
  static constexpr int kDiskStaging = 2;  // pinned staging buffers for disk parts

  // Takes the placed weights; allocates min(num_slots, streamed units) slots and, when some
  // weights are on the disk, the disk staging. kOutOfMemory names the buffer.
  static Result<std::unique_ptr<WeightSlots>> create(std::unique_ptr<OffloadWeights> weights,
                                                     int num_slots, cuda::Lanes& lanes,
                                                     storage::IoBackend& io);

  const OffloadWeights& weights() const { return *weights_; }
  // Unit u's weights by canonical name: resident tensors, and streamed ones in its slot.
  const TensorMap& views(int64_t u) const { return views_[static_cast<size_t>(u)]; }
  // The plan's view of the weights: which units stream, which read from disk, slots, staging.
  void describe_to(StepShape* shape) const;
  void bind(Handlers& handlers);
  uint64_t pinned_bytes() const { return pinned_bytes_ + weights_->pinned_bytes(); }

 private:
  WeightSlots(std::unique_ptr<OffloadWeights> weights, int num_slots, cuda::Lanes& lanes,
              storage::IoBackend& io)
      : weights_(std::move(weights)), num_slots_(num_slots), lanes_(lanes), io_(io) {}
  Result<HostTask> read_disk_part(const Action& a);
  uint64_t load_part(const Action& a, cuda::Lane lane);

  std::unique_ptr<OffloadWeights> weights_;
  int num_slots_;
  cuda::Lanes& lanes_;
  storage::IoBackend& io_;
  std::vector<Tensor> slots_;         // [min(num_slots, streamed units)] device, max streamed bytes
  std::vector<int32_t> unit_slot_;    // [layers + 1]: the unit's slot, or -1
  std::vector<TensorMap> views_;      // [layers + 1]
  std::vector<Tensor> disk_staging_;  // [kDiskStaging] pinned, max disk bytes (none without disk)
  uint64_t pinned_bytes_ = 0;
};

}  // namespace strata::offload
