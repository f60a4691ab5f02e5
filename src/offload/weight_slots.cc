#include "offload/weight_slots.h"

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "offload/pinned.h"
#include "storage/io_file.h"

namespace strata::offload {

Result<std::unique_ptr<WeightSlots>> WeightSlots::create(std::unique_ptr<OffloadWeights> weights,
                                                         int num_slots, cuda::Lanes& lanes,
                                                         storage::IoBackend& io) {
  std::unique_ptr<WeightSlots> w(new WeightSlots(std::move(weights), num_slots, lanes, io));
  const OffloadWeights& ow = *w->weights_;
  const int64_t units = ow.num_units();
  // Slots in the order the plan assigns them.
  w->unit_slot_.assign(static_cast<size_t>(units), -1);
  int32_t streamed = 0;
  for (int64_t u = 0; u < units; ++u)
    if (ow.unit(u).streamed()) w->unit_slot_[u] = streamed++ % num_slots;
  const size_t slot_bytes = ow.max_streamed_bytes();
  if (slot_bytes > 0)
    for (int s = 0; s < std::min(num_slots, streamed); ++s) {
      const Shape words = {static_cast<int64_t>((slot_bytes + 3) / 4)};
      STRATA_ASSIGN_OR_RETURN(Tensor t, lanes.allocate_device(DType::kI32, words, "weights.prefetch_slot"));
      w->slots_.push_back(std::move(t));
    }
  w->views_.resize(static_cast<size_t>(units));
  for (int64_t u = 0; u < units; ++u)
    w->views_[u] = ow.views(u, w->unit_slot_[u] >= 0 ? w->slots_[w->unit_slot_[u]] : Tensor());
  for (int s = 0; s < kDiskStaging && ow.max_disk_bytes() > 0; ++s) {
    STRATA_ASSIGN_OR_RETURN(Tensor t, allocate_pinned_bytes(lanes, ow.max_disk_bytes(), "weights.disk_staging", &w->pinned_bytes_));
    w->disk_staging_.push_back(std::move(t));
  }
  return w;
}

void WeightSlots::describe_to(StepShape* shape) const {
  const int64_t units = weights_->num_units();
  shape->slots = num_slots_;
  shape->disk_staging = kDiskStaging;
  shape->streamed.resize(static_cast<size_t>(units));
  shape->from_disk.resize(static_cast<size_t>(units));
  for (int64_t u = 0; u < units; ++u) {
    shape->streamed[u] = weights_->unit(u).streamed();
    shape->from_disk[u] = weights_->unit(u).disk_bytes > 0;
  }
}

void WeightSlots::bind(Handlers& handlers) {
  handlers[static_cast<size_t>(ActionKind::kDiskRead)].task = [this](const Action& a) {
    return read_disk_part(a);
  };
  handlers[static_cast<size_t>(ActionKind::kLoadWeights)].enqueue =
      [this](const Action& a, cuda::Lane lane) -> Result<uint64_t> { return load_part(a, lane); };
}

Result<HostTask> WeightSlots::read_disk_part(const Action& a) {
  const WeightUnit& unit = weights_->unit(a.unit);
  void* buf = disk_staging_[a.staging].raw();
  const storage::IoFile* file = weights_->file();
  return HostTask([this, &unit, buf, file, what = "streamed weights (" + describe(a) + ")"]() -> Result<uint64_t> {
    storage::IoRequest r;
    r.kind = storage::IoOpKind::kRead;
    r.file = file;
    r.offset = unit.disk_offset;
    r.buf = buf;
    r.length = unit.disk_bytes;
    r.what = what;
    STRATA_RETURN_IF_ERROR(storage::run_io(io_, {&r, 1}));
    return static_cast<uint64_t>(unit.disk_bytes);
  });
}

// Part `a.part` of `a.parts` of the unit's streamed bytes, each of its pinned and staged halves
// cut at page multiples.
uint64_t WeightSlots::load_part(const Action& a, cuda::Lane lane) {
  const WeightUnit& unit = weights_->unit(a.unit);
  STRATA_CHECK(a.slot == unit_slot_[a.unit], "offload: the plan and the engine disagree on a slot");
  auto* slot = static_cast<std::byte*>(slots_[a.slot].raw());
  auto chunk = [&](size_t total) {
    const size_t per = (total / a.parts + 4095) / 4096 * 4096;
    const size_t b0 = std::min(total, per * a.part), b1 = std::min(total, per * (a.part + 1));
    return std::make_pair(b0, b1);
  };
  auto [c0, c1] = chunk(unit.cpu_bytes);
  if (c1 > c0) lanes_.copy(lane, slot + c0, static_cast<const std::byte*>(unit.cpu_blob.raw()) + c0, c1 - c0);
  auto [d0, d1] = chunk(unit.disk_bytes);
  if (d1 > d0)
    lanes_.copy(lane, slot + unit.cpu_bytes + d0,
                static_cast<const std::byte*>(disk_staging_[a.staging].raw()) + d0, d1 - d0);
  return (c1 - c0) + (d1 - d0);
}

}  // namespace strata::offload
