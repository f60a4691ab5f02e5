#include "compute/logit_stats.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "compute/logit_adjust.h"

namespace strata::compute {

namespace {

// fn(t) for each token t < V that `allowed` allows, in index order, a word of the mask at a time.
template <typename Fn>
void for_each_allowed(std::span<const uint64_t> allowed, int64_t V, Fn&& fn) {
  for (size_t w = 0; w < allowed.size(); ++w)
    for (uint64_t bits = allowed[w]; bits != 0; bits &= bits - 1) {
      const int64_t t = static_cast<int64_t>(w * 64) + std::countr_zero(bits);
      if (t >= V) return;
      fn(t);
    }
}

LogitStats row_stats(const float* x, int64_t V, const LogitQuery& q) {
  LogitStats st;
  const int64_t arg = std::max_element(x, x + V) - x;
  st.argmax = static_cast<int32_t>(arg);
  st.max_logit = x[arg];
  st.allowed_argmax = st.argmax;
  st.allowed_max = st.max_logit;
  const bool masked = !q.allowed.empty();
  if (masked) {
    // The first allowed token of the largest logit (the first allowed one when all are -inf).
    int64_t best = -1;
    st.allowed_max = -INFINITY;
    for_each_allowed(q.allowed, V, [&](int64_t i) {
      if (x[i] > st.allowed_max || (x[i] == st.allowed_max && best < 0)) {
        st.allowed_max = x[i];
        best = i;
      }
    });
    st.allowed_argmax = static_cast<int32_t>(std::max<int64_t>(best, 0));
  }
  const double inv_t = q.temperature > 0 ? 1.0 / q.temperature : 0.0;
  // At temperature 1 the two sums take the same terms, bit for bit: one pass gives both.
  const bool same = q.log_sum && inv_t == 1.0 && !masked;
  double sum = 0, tsum = 0;
  if (q.log_sum)
    for (int64_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(x[i]) - x[arg]);
  if (inv_t > 0 && !same && !masked)
    for (int64_t i = 0; i < V; ++i) tsum += std::exp(x[i] * inv_t - x[arg] * inv_t);
  if (inv_t > 0 && masked && st.allowed_max > -INFINITY)
    for_each_allowed(q.allowed, V, [&](int64_t i) { tsum += std::exp(x[i] * inv_t - st.allowed_max * inv_t); });
  st.log_sum = q.log_sum ? std::log(sum) : 0.0;
  st.temperature_sum = same ? sum : tsum;
  // A row with NaN or infinities has no order to sort by; the caller reports it (it sees the
  // non-finite max or log-sum).
  if (!std::isfinite(st.max_logit) || !std::isfinite(st.log_sum)) return st;
  const int64_t k = std::min<int64_t>(std::max<int32_t>(q.candidates, 0), V);
  // Without the log-sum, a NaN the maximum passed over must still stop the sort (the log-sum,
  // NaN then, tells the caller).
  if (k > 0 && !q.log_sum && std::any_of(x, x + V, [](float v) { return std::isnan(v); })) {
    st.log_sum = std::numeric_limits<double>::quiet_NaN();
    return st;
  }
  if (k > 0) {
    std::vector<std::pair<float, int32_t>> all(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) all[i] = {x[i], static_cast<int32_t>(i)};
    auto better = [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    if (k == V) {
      std::sort(all.begin(), all.end(), better);
    } else {
      std::partial_sort(all.begin(), all.begin() + k, all.end(), better);
    }
    all.resize(static_cast<size_t>(k));
    st.top = std::move(all);
  }
  return st;
}

}  // namespace

Result<std::vector<LogitStats>> logit_stats_on_host(const Tensor& logits,
                                                    std::span<const LogitQuery> queries) {
  if (logits.dtype() != DType::kF32 || logits.rank() != 2 || logits.memory() == MemoryKind::kGpu)
    return invalid_argument("logit statistics: the logits must be a host F32 [rows, vocab] tensor");
  const int64_t R = logits.dim(0), V = logits.dim(1);
  if (static_cast<int64_t>(queries.size()) != R)
    return invalid_argument("logit statistics: " + std::to_string(queries.size()) + " queries for " +
                            std::to_string(R) + " rows");
  for (const LogitQuery& q : queries) STRATA_RETURN_IF_ERROR(check_mask(V, q.allowed, "logit statistics"));
  std::vector<LogitStats> out;
  out.reserve(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) out.push_back(row_stats(logits.data<float>() + r * V, V, queries[r]));
  return out;
}

}  // namespace strata::compute
