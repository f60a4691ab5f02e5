// Pinned host buffers of a byte size, as the engine's components allocate them: 4 KiB aligned
// (cuda::Lanes::allocate_pinned), rounded up to whole 32-bit words, each counted into the
// component's total. Thread safe as Lanes is.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/tensor.h"
#include "cuda/lanes.h"

namespace strata::offload {

// `bytes` of pinned memory named `what` in errors; adds its size to `*counted`.
inline Result<Tensor> allocate_pinned_bytes(cuda::Lanes& lanes, size_t bytes, const std::string& what,
                                            uint64_t* counted) {
  const Shape words = {static_cast<int64_t>((bytes + 3) / 4)};
  STRATA_ASSIGN_OR_RETURN(Tensor t, lanes.allocate_pinned(DType::kI32, words, what));
  *counted += t.bytes();
  return t;
}

}  // namespace strata::offload
