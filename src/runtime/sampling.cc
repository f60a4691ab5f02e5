#include "runtime/sampling.h"

#include <algorithm>
#include <bit>
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

compute::LogitQuery logit_query(const SamplingParams& p, int32_t top_logprobs, int64_t vocab) {
  compute::LogitQuery q;
  if (!p.greedy()) {
    q.temperature = p.temperature;
    const bool whole_row = (p.top_k == 0 || p.top_k >= vocab) && p.top_p >= 1.0f;
    if (!whole_row) q.candidates = p.top_k > 0 && p.top_k <= kSampleCandidates ? p.top_k : kSampleCandidates;
  }
  q.candidates = std::max(q.candidates, top_logprobs);
  return q;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

// Softmax of logit / temperature over the kept candidates (top_k of them, in stats.top's order),
// normalised by their own sum, or by the whole row's when top_k keeps the whole vocabulary and
// top_p may stop inside the candidates; then the nucleus draw.
bool Sampler::pick(const compute::LogitStats& st, int32_t vocab, int32_t* token) {
  if (params_.greedy()) {
    *token = st.argmax;
    return true;
  }
  const auto& cand = st.top;
  const int32_t have = static_cast<int32_t>(cand.size());
  const int32_t keep = (params_.top_k > 0 && params_.top_k < vocab) ? params_.top_k : vocab;
  const double inv_t = 1.0 / params_.temperature;
  const double mx = cand.empty() ? st.max_logit * inv_t : cand[0].first * inv_t;
  double sum = 0;
  std::vector<double> probs;
  if (keep <= have) {
    probs.resize(keep);
    for (int32_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(cand[i].first * inv_t - mx);
  } else if (keep == vocab && params_.top_p < 1.0f) {
    probs.resize(have);
    for (int32_t i = 0; i < have; ++i) probs[i] = std::exp(cand[i].first * inv_t - mx);
    sum = st.temperature_sum;
  } else {
    return false;
  }
  if (probs.empty()) return false;
  for (auto& q : probs) q /= sum;
  const bool complete = static_cast<int32_t>(probs.size()) >= keep;
  const std::optional<int32_t> chosen = draw_nucleus(probs, params_.top_p, complete, rng_);
  if (!chosen) return false;
  *token = cand[*chosen].second;
  return true;
}

Sampler::Decision Sampler::decide(const compute::LogitStats& stats, int32_t vocab) {
  Decision d;
  if (pick(stats, vocab, &d.token)) return d;
  const int32_t keep = (params_.top_k > 0 && params_.top_k < vocab) ? params_.top_k : vocab;
  if (keep == vocab && params_.top_p >= 1.0f) {
    // Temperature sampling over the whole row without an order: one pass, no sort, with the
    // statistics' sum of exp((x - max) / T).
    d.kind = Decision::Kind::kWholeRow;
    d.draw.temperature = params_.temperature;
    d.draw.max_logit = stats.max_logit;
    d.draw.target = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * stats.temperature_sum;
    return d;
  }
  d.kind = Decision::Kind::kRow;
  return d;
}

int32_t Sampler::choose_from_row(const compute::LogitStats& stats, std::span<const float> logits) {
  // More candidates than the statistics hold: the top_k best, or for top_p as many as the
  // nucleus needs, growing eightfold (a partial sort of the row each time, not a full one).
  const int32_t V = static_cast<int32_t>(logits.size());
  const int32_t keep = (params_.top_k > 0 && params_.top_k < V) ? params_.top_k : V;
  const Tensor row = Tensor::wrap(const_cast<float*>(logits.data()), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
  int32_t want = keep < V ? keep : std::min(V, std::max<int32_t>(8 * static_cast<int32_t>(stats.top.size()), 64));
  for (;;) {
    const compute::LogitQuery q{params_.temperature, want};
    compute::LogitStats more = stats;
    more.top = std::move(compute::logit_stats_on_host(row, {&q, 1}).value()[0].top);
    int32_t token = 0;
    if (pick(more, V, &token)) return token;
    STRATA_CHECK(want < V, "sampling over the whole row must succeed");
    want = static_cast<int32_t>(std::min<int64_t>(V, 8 * static_cast<int64_t>(want)));
  }
}

Sample Sampler::sample(const compute::LogitStats& stats, std::span<const float> logits) {
  STRATA_CHECK(!logits.empty());
  const int32_t V = static_cast<int32_t>(logits.size());
  Sample out;
  const Decision d = decide(stats, V);
  switch (d.kind) {
    case Decision::Kind::kToken: out.token = d.token; break;
    case Decision::Kind::kWholeRow: out.token = compute::draw_in_row(logits, d.draw); break;
    case Decision::Kind::kRow: out.token = choose_from_row(stats, logits); break;
  }
  // log-softmax at the token as token_logprob() computes it: (x - max) - log(sum).
  out.logprob = static_cast<float>(static_cast<double>(logits[out.token]) - stats.max_logit - stats.log_sum);
  return out;
}

Sample Sampler::sample(std::span<const float> logits) {
  STRATA_CHECK(!logits.empty());
  const int32_t V = static_cast<int32_t>(logits.size());
  compute::LogitQuery q;
  if (!params_.greedy()) q = {params_.temperature, params_.top_k > 0 && params_.top_k < V ? params_.top_k : V};
  const Tensor row = Tensor::wrap(const_cast<float*>(logits.data()), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
  auto stats = compute::logit_stats_on_host(row, {&q, 1});
  STRATA_CHECK(stats.is_ok(), stats.status().to_string());
  return sample(stats.value()[0], logits);
}

}  // namespace strata::runtime
