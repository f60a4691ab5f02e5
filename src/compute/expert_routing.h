// Expert routing of a mixture-of-experts layer: from the router's logits [T, experts] to, for each
// expert, the tokens it runs on and the weight its output gets in each token's sum. Each token
// goes to the k experts of highest softmax probability (ties to the lower expert index); their
// weights are those probabilities, divided by their sum when `renormalise` (Mixtral always,
// Qwen3-MoE with norm_topk_prob), as transformers computes them in fp32. Pure; thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/tensor.h"

namespace strata::compute {

struct ExpertRouting {
  int64_t num_experts = 0;
  // Expert e's tokens are rows[offsets[e] .. offsets[e + 1]) (ascending token index), with their
  // weights at the same positions of `weights`.
  std::vector<int64_t> offsets;  // [num_experts + 1]
  std::vector<int32_t> rows;     // [tokens * k]
  std::vector<float> weights;    // [tokens * k]

  int64_t tokens_of(int64_t e) const { return offsets[e + 1] - offsets[e]; }
  std::span<const int32_t> rows_of(int64_t e) const {
    return {rows.data() + offsets[e], static_cast<size_t>(tokens_of(e))};
  }
  std::span<const float> weights_of(int64_t e) const {
    return {weights.data() + offsets[e], static_cast<size_t>(tokens_of(e))};
  }
  // The number of experts with at least one token.
  int64_t active_experts() const;
};

// `logits` is a host (or pinned) F32 [T, experts] tensor; 1 <= k <= experts.
ExpertRouting route_tokens(const Tensor& logits, int64_t k, bool renormalise);

}  // namespace strata::compute
