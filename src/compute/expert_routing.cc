#include "compute/expert_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/check.h"

namespace strata::compute {

int64_t ExpertRouting::active_experts() const {
  int64_t n = 0;
  for (int64_t e = 0; e < num_experts; ++e) n += tokens_of(e) > 0;
  return n;
}

ExpertRouting route_tokens(const Tensor& logits, int64_t k, bool renormalise) {
  STRATA_CHECK(logits.rank() == 2 && logits.dtype() == DType::kF32 &&
                   logits.memory() != MemoryKind::kGpu,
               "route_tokens: logits must be a host F32 [tokens, experts] tensor, got " +
                   shape_string(logits.shape()));
  const int64_t T = logits.dim(0), E = logits.dim(1);
  STRATA_CHECK(k >= 1 && k <= E, "route_tokens: k " + std::to_string(k) + " for " +
                                     std::to_string(E) + " experts");
  const float* l = logits.data<float>();
  // Per token: the chosen experts and their weights.
  std::vector<int32_t> chosen(static_cast<size_t>(T * k));
  std::vector<float> chosen_w(static_cast<size_t>(T * k));
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = l + t * E;
    const float m = *std::max_element(row, row + E);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(row[e] - m);
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return p[a] > p[b] || (p[a] == p[b] && a < b);
    });
    float chosen_sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) chosen_sum += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      chosen[t * k + j] = order[j];
      chosen_w[t * k + j] = renormalise ? p[order[j]] / chosen_sum : p[order[j]];
    }
  }
  ExpertRouting r;
  r.num_experts = E;
  r.offsets.assign(static_cast<size_t>(E + 1), 0);
  for (int32_t e : chosen) ++r.offsets[e + 1];
  for (int64_t e = 0; e < E; ++e) r.offsets[e + 1] += r.offsets[e];
  r.rows.resize(chosen.size());
  r.weights.resize(chosen.size());
  std::vector<int64_t> next(r.offsets.begin(), r.offsets.end() - 1);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t at = next[chosen[t * k + j]]++;
      r.rows[at] = static_cast<int32_t>(t);
      r.weights[at] = chosen_w[t * k + j];
    }
  }
  return r;
}

}  // namespace strata::compute
