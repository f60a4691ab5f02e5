// Sampling's work on the GPU past the logit statistics (cuda/logit_stats.h): compute/logit_adjust.h's
// row adjustments, whole-row draws and value look-ups, computed where the logits are so that only
// the chosen tokens cross PCIe (the CUDA backend's Backend::adjust_logits, draw_tokens and
// logit_values). Every function takes F32 [R, V] device logits of a CUDA backend and runs on its
// stream. Not thread safe. No CUDA header here.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/logit_adjust.h"

namespace strata::cuda {

// Row i of the result (F32 [adjustments.size(), V], device) is logits row adjustments[i].row
// with its changes, as compute::adjust_row() makes them.
Result<Tensor> adjust_logits(compute::Backend& backend, const Tensor& logits,
                             std::span<const compute::RowAdjustment> adjustments);
// Each draw's token and the logit there, the token as compute::draw_in_row() picks it except for
// the order of the sums: a thread sums each of 256 runs of the row, the runs' sums are added in
// order, then the run the target falls in is walked token by token.
Result<std::vector<compute::DrawnToken>> draw_tokens(compute::Backend& backend, const Tensor& logits,
                                         std::span<const compute::RowDraw> draws);
// logits[row, token] of each pair.
Result<std::vector<float>> logit_values(compute::Backend& backend, const Tensor& logits,
                                        std::span<const std::pair<int64_t, int32_t>> at);

}  // namespace strata::cuda
