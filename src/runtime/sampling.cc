#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace strata::runtime {

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0)
    return invalid_argument("temperature must be a number >= 0 (got " + std::to_string(temperature) + ")");
  if (top_k < 0) return invalid_argument("top_k must be >= 0 (got " + std::to_string(top_k) + ")");
  if (!(top_p > 0.0f && top_p <= 1.0f))
    return invalid_argument("top_p must be in (0, 1] (got " + std::to_string(top_p) + ")");
  return Status::ok();
}

float token_logprob(std::span<const float> logits, int32_t token) {
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  return static_cast<float>(static_cast<double>(logits[token]) - mx - std::log(sum));
}

std::optional<int32_t> draw_nucleus(std::span<const double> probs, float top_p, bool complete,
                                    std::mt19937_64& rng) {
  STRATA_CHECK(!probs.empty());
  int32_t keep = static_cast<int32_t>(probs.size());
  double sum = 1.0;
  if (top_p < 1.0f) {
    double cum = 0;
    int32_t n = 0;
    while (n < keep) {
      cum += probs[n++];
      if (cum >= top_p) break;
    }
    if (cum < top_p && !complete) return std::nullopt;  // the nucleus reaches past `probs`
    keep = n;
    sum = cum;
  }
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
  double acc = 0;
  for (int32_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return i;
  }
  return keep - 1;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

Sample Sampler::sample(std::span<const float> logits) {
  STRATA_CHECK(!logits.empty());
  const int32_t V = static_cast<int32_t>(logits.size());
  Sample out;
  if (params_.greedy()) {
    out.token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.logprob = token_logprob(logits, out.token);
    return out;
  }
  // Candidates sorted by logit, descending; ties broken by token id for determinism.
  scratch_.resize(V);
  for (int32_t i = 0; i < V; ++i) scratch_[i] = {logits[i], i};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  int32_t keep = V;
  if (params_.top_k > 0 && params_.top_k < V) {
    keep = params_.top_k;
    std::partial_sort(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), by_logit);
  } else {
    std::sort(scratch_.begin(), scratch_.end(), by_logit);
  }
  // Softmax of logit / temperature over the kept candidates.
  const double inv_t = 1.0 / params_.temperature;
  const double mx = scratch_[0].first * inv_t;
  std::vector<double> probs(keep);
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(scratch_[i].first * inv_t - mx);
  for (auto& p : probs) p /= sum;
  const int32_t chosen = *draw_nucleus(probs, params_.top_p, /*complete=*/true, rng_);
  out.token = scratch_[chosen].second;
  out.logprob = token_logprob(logits, out.token);
  return out;
}

}  // namespace strata::runtime
