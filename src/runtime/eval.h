// Perplexity of a model on a token stream, for judging what compression costs in quality.
// The stream is cut into consecutive windows of `context` tokens; inside a window every token
// after the first is scored given the tokens before it (log-softmax of the model's logits, in
// double), so each window starts without history. Windows are run several at a time as one
// ragged batch. Not thread safe (it drives the model's backend).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <span>

#include "common/status.h"
#include "compute/transformer.h"

namespace strata::runtime {

struct EvalOptions {
  int32_t context = 0;        // tokens per window; 0: min(1024, the model's context)
  int32_t max_batch = 8;      // windows per forward (fewer when the logits would be large)
};

struct EvalResult {
  int64_t tokens_scored = 0;
  int32_t windows = 0;
  double nll_sum = 0;         // nats
  double seconds = 0;

  double mean_nll() const { return tokens_scored ? nll_sum / static_cast<double>(tokens_scored) : 0; }
  double perplexity() const { return std::exp(mean_nll()); }
};

// Called after each batch of windows with the tokens scored so far and the total to score.
using EvalProgress = std::function<void(int64_t scored, int64_t total)>;

Result<EvalResult> evaluate_perplexity(compute::Transformer& model, std::span<const int32_t> tokens,
                                       const EvalOptions& options, const EvalProgress& progress = {});

}  // namespace strata::runtime
