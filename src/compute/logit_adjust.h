// Sampling's work on a batch of logits past their statistics (compute/logit_stats.h), done where
// the logits are: a request's changes to its row before the choice (penalties, biases, refused
// tokens, a structured-output mask, min_p), the draw of a token over a whole row at a temperature,
// and the values at chosen tokens. The host functions here are the reference every backend
// matches (Backend::adjust_logits, draw_tokens and logit_values; the CUDA backend's run on the
// GPU, so only the chosen tokens and the statistics cross PCIe). Pure, thread safe.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace strata::compute {

// A change to one token's logit x, its steps in this order.
struct TokenEdit {
  int32_t token = 0;
  float penalty = 1.0f;   // x > 0 ? x / penalty : x * penalty (the repetition penalty; 1: none)
  float subtract = 0.0f;  // x -= subtract (presence and frequency penalties)
  float add = 0.0f;       // x += add (logit_bias)
  bool refuse = false;    // x = -inf (an end token before min_tokens)
};

// A row's changes, in this order: the token edits, the mask, min_p.
struct RowAdjustment {
  int64_t row = 0;               // the row of the logits it changes
  std::vector<TokenEdit> edits;  // distinct tokens, each in [0, vocab)
  // Empty: every token stays; else (vocab + 63) / 64 words, and a token t whose bit t % 64 of
  // allowed[t / 64] is clear gets -inf.
  std::vector<uint64_t> allowed;
  bool min_p = false;         // then every x < max(x) + min_p_offset gets -inf
  float min_p_offset = 0.0f;  // temperature * log(min_p)
};

// Applies `a` to one row in place. kInvalidArgument for an edit's token outside the row or a
// mask of the wrong length.
Status adjust_row(std::span<float> x, const RowAdjustment& a);

// A draw over a whole row at a temperature, without an order: token i weighs
// exp(x[i] / T - max / T) (in double, T and max as given), and the draw takes the first token,
// in index order, whose running sum of weights passes `target` (skipping tokens of weight 0);
// rounding past the sum takes the last token of any weight (0 when none has any).
struct RowDraw {
  int64_t row = 0;
  float temperature = 1.0f;  // > 0
  float max_logit = 0.0f;    // the row's largest logit (its statistics')
  double target = 0.0;       // a uniform draw in [0, 1) times the row's sum of weights
  // Non-empty: a mask as RowAdjustment::allowed's; the tokens it does not allow weigh 0 (the
  // draw over the row with them at -inf, without a copy of it).
  std::span<const uint64_t> allowed;
};

// A draw's token and the row's logit there (the model's own, for a row that is the model's or
// that only refuses tokens: its logprob needs no look-up).
struct DrawnToken {
  int32_t token = 0;
  float logit = 0.0f;
};

// The token of `d` over one row, summing in index order.
int32_t draw_in_row(std::span<const float> x, const RowDraw& d);

// How the host functions below go over their n rows: fn(begin, end) on ranges covering [0, n)
// once. Empty: one range, on the calling thread; a backend may split them over its threads.
using RowLoop = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& fn)>;

// Host F32 logits [R, V] -> host F32 [adjustments.size(), V]: row i is logits row
// adjustments[i].row with its changes.
Result<Tensor> adjust_logits_on_host(const Tensor& logits, std::span<const RowAdjustment> adjustments,
                                     const RowLoop& loop = {});
// draw_in_row() of each draw over its row of host F32 logits [R, V], with the logit there.
Result<std::vector<DrawnToken>> draw_tokens_on_host(const Tensor& logits, std::span<const RowDraw> draws,
                                                 const RowLoop& loop = {});
// logits[row, token] of each (row, token) pair, host F32 logits [R, V].
Result<std::vector<float>> logit_values_on_host(const Tensor& logits,
                                                std::span<const std::pair<int64_t, int32_t>> at);

// The checks every backend makes before these operations, with the operation's name in the error:
// logits F32 [R, V] (`host`: not in GPU memory), rows in [0, R), tokens in [0, V), masks of
// (V + 63) / 64 words, draws' temperatures > 0.
Status check_logits(const Tensor& logits, bool host, const char* op);
// A mask (RowAdjustment::allowed's form; empty: none) of the wrong length for `vocab` tokens.
Status check_mask(int64_t vocab, std::span<const uint64_t> allowed, const char* op);
Status check_adjustments(const Tensor& logits, std::span<const RowAdjustment> adjustments);
Status check_draws(const Tensor& logits, std::span<const RowDraw> draws);
Status check_values(const Tensor& logits, std::span<const std::pair<int64_t, int32_t>> at);

}  // namespace strata::compute
