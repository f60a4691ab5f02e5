// Sampling support on the GPU: per-row statistics of a batch of logits, so that choosing the next
// token needs no pass over the vocabulary on the host. For each row: the first index of the
// largest logit, log-sum-exp (for log-softmax), the softmax denominator at a temperature, and the
// best `candidates` (logit, token) pairs sorted by logit descending, then token ascending (the
// order runtime::Sampler sorts in). Sums are in double, as runtime::Sampler computes them. Not
// thread safe (it runs on the backend's stream). No CUDA header here.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"

namespace strata::cuda {

struct LogitQuery {
  float temperature = 0.0f;  // > 0: also sum exp(x / T - max / T) over the row
  int32_t candidates = 0;    // how many of the best (logit, token) pairs to return
};

struct LogitStats {
  int32_t argmax = 0;          // first index of the largest logit
  float max_logit = 0.0f;
  double log_sum = 0.0;        // log(sum exp(x - max)): logprob(t) = (x[t] - max) - log_sum
  double temperature_sum = 0;  // sum over the row of exp(x / T - max / T), when T > 0
  std::vector<std::pair<float, int32_t>> top;  // (logit, token), best first
};

// `logits` [R, V] is an F32 device tensor of a CUDA backend, or the host tensor its last
// to_host_f32() returned (whose device copy is then read). One query per row.
Result<std::vector<LogitStats>> logit_stats(compute::Backend& backend, const Tensor& logits,
                                            std::span<const LogitQuery> queries);

}  // namespace strata::cuda
