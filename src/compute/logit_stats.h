// Per-row statistics of a batch of logits, for choosing the next token without another pass over
// the vocabulary: the first index of the largest logit, log-sum-exp (for log-softmax), the
// softmax denominator at a temperature, and the best `candidates` (logit, token) pairs sorted by
// logit descending, then token ascending. Sums are in double. A backend computes them where its
// logits are (Backend::logit_stats; the CUDA backend on the GPU); logit_stats_on_host is the
// reference every backend matches. Pure, thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace strata::compute {

struct LogitQuery {
  float temperature = 0.0f;  // > 0: also sum exp(x / T - max / T) over the row
  int32_t candidates = 0;    // how many of the best (logit, token) pairs to return
  // false: the log-sum is not wanted (a row chosen from, whose logprobs come from another row);
  // the host then skips its pass over the row and leaves it 0 (NaN for a row holding a NaN when
  // candidates are asked), a backend may compute it anyway.
  bool log_sum = true;
  // Non-empty ((vocab + 63) / 64 words; token t allowed when bit t % 64 of allowed[t / 64] is
  // set): the row is also chosen from under this mask, the tokens it does not allow at -inf
  // (LogitStats::allowed_argmax and allowed_max, and temperature_sum over the allowed tokens only),
  // so a row whose changes only refuse tokens needs no adjusted copy.
  std::span<const uint64_t> allowed;
};

struct LogitStats {
  int32_t argmax = 0;          // first index of the largest logit
  float max_logit = 0.0f;
  double log_sum = 0.0;        // log(sum exp(x - max)): logprob(t) = (x[t] - max) - log_sum (when asked)
  double temperature_sum = 0;  // sum over the row of exp(x / T - max / T), when T > 0; under a
                               // query's mask over the allowed tokens, from allowed_max
  // Under a query's mask: the first index of the largest allowed logit and that logit (-inf, and
  // index 0, when the mask allows no finite logit). Without one, argmax and max_logit.
  int32_t allowed_argmax = 0;
  float allowed_max = 0.0f;
  std::vector<std::pair<float, int32_t>> top;  // (logit, token), best first
};

// The statistics of host logits [R, V] (F32), one query per row, summed in index order.
// kInvalidArgument when the tensor is not host F32 [R, V] or the queries are not R.
Result<std::vector<LogitStats>> logit_stats_on_host(const Tensor& logits,
                                                    std::span<const LogitQuery> queries);

}  // namespace strata::compute
