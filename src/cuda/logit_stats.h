// Sampling support on the GPU: compute/logit_stats.h's per-row statistics of a batch of logits,
// computed where the logits are, so that choosing the next token needs no pass over the
// vocabulary on the host (the CUDA backend's Backend::logit_stats). Not thread safe (it runs on
// the backend's stream). No CUDA header here.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/logit_stats.h"

namespace strata::cuda {

using compute::LogitQuery;
using compute::LogitStats;

// `logits` [R, V] is an F32 device tensor of a CUDA backend, or the host tensor its last
// to_host_f32() returned (whose device copy is then read). One query per row.
Result<std::vector<LogitStats>> logit_stats(compute::Backend& backend, const Tensor& logits,
                                            std::span<const LogitQuery> queries);

}  // namespace strata::cuda
