// Choosing a step's next tokens where the backend left the logits (on the GPU for a CUDA
// backend): each row's statistics there, adjusted copies of the rows whose requests change their
// logits (penalties, logit_bias, min_tokens, a constraint's mask, min_p) and their statistics,
// the draws over whole rows; the samplers finish each choice from the statistics on the host, so
// only those, the chosen tokens and the model's logits at them cross PCIe. Also the changes a
// request makes to a row, as the host computes them (the reference). Not thread safe (the
// backend's and the samplers' state).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/logit_adjust.h"
#include "runtime/generator.h"
#include "runtime/sampling.h"

namespace strata::runtime {

// `row` (one sequence's logits) with `req`'s changes (see GenerationRequest) after `generated`,
// and without the end tokens (`eos_ids` unless ignore_eos, the stop tokens) when `too_early`.
// `mask` (null: every token) is a constraint's: tokens it does not allow get -inf, and so do the
// end tokens unless the constrained text is complete, before min_p, so min_p and the sampler's
// filters (temperature, top_k, top_p) see the constrained distribution.
std::vector<float> adjusted_logits(const GenerationRequest& req, std::span<const int32_t> generated,
                                   std::span<const float> row, bool too_early, std::span<const int64_t> eos_ids,
                                   const AllowedTokens* mask = nullptr);

// A sequence's token edits (compute::TokenEdit) for its request's repetition, presence and
// frequency penalties and its logit_bias, kept up to date a generated token at a time.
class TokenEdits {
 public:
  TokenEdits(const GenerationRequest& req, int64_t vocab);
  void generated(int32_t token);
  std::span<const compute::TokenEdit> edits() const { return edits_; }

 private:
  compute::TokenEdit* edit(int64_t token);  // null outside the vocabulary

  const GenerationRequest* req_;
  int64_t vocab_;
  std::vector<compute::TokenEdit> edits_;
  std::unordered_map<int32_t, size_t> at_;      // token -> its edit
  std::unordered_map<int32_t, int32_t> count_;  // generated tokens' counts
};

// The same changes as a backend applies them where the logits are (compute/logit_adjust.h), for
// row `row` of logits over a vocabulary of `vocab` tokens, from the sequence's `edits`
// (TokenEdits for `req`).
compute::RowAdjustment logit_adjustment(const GenerationRequest& req, std::span<const compute::TokenEdit> edits,
                                        bool too_early, std::span<const int64_t> eos_ids, const AllowedTokens* mask,
                                        int64_t row, int64_t vocab);


// One row of a step's logits: its sequence's request, sampler and state.
struct RowToChoose {
  const GenerationRequest* req = nullptr;
  Sampler* sampler = nullptr;
  std::span<const compute::TokenEdit> edits;  // the sequence's TokenEdits (empty without)
  int32_t generated = 0;                      // tokens it generated so far (min_tokens)
  const AllowedTokens* mask = nullptr;        // its constraint's allowed set now, or null
};

// A row's choice: the token with the model's logprob and the request's top_logprobs, or an error
// that ends the sequence (NaN or infinite logits; no token the constraint, logit_bias or
// min_tokens leave).
struct TokenChoice {
  Sample s;
  std::vector<std::pair<int32_t, float>> top;
  std::string error;
};

// The choices of `rows` from `logits` [rows.size(), V] (F32 in `backend`'s memory), row i for
// rows[i]. Statistics that sort candidates, and adjusted copies, take at most `rows_at_once` rows
// a call (their scratch grows with the rows). kInvalidArgument or a backend's error fails the step.
Result<std::vector<TokenChoice>> choose_tokens(compute::Backend& backend, const Tensor& logits,
                                               std::span<const RowToChoose> rows, std::span<const int64_t> eos_ids,
                                               size_t rows_at_once);

}  // namespace strata::runtime
