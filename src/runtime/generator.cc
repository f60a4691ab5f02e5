#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "cuda/cuda_backend.h"
#include "cuda/logit_stats.h"

namespace strata::runtime {

const char* finish_reason_name(FinishReason r) { return r == FinishReason::kStop ? "stop" : "length"; }

namespace {
// The k most likely tokens of a row of logits with their log-softmax, best first.
std::vector<std::pair<int32_t, float>> top_logprobs(std::span<const float> logits, int32_t k) {
  const int32_t V = static_cast<int32_t>(logits.size());
  k = std::min(k, V);
  std::vector<int32_t> idx(V);
  for (int32_t i = 0; i < V; ++i) idx[i] = i;
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  double mx = logits[idx[0]], sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  const double lse = mx + std::log(sum);
  std::vector<std::pair<int32_t, float>> out;
  for (int32_t i = 0; i < k; ++i) out.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - lse));
  return out;
}

// What runtime::Sampler picks, computed from the GPU's statistics of a row instead of the row:
// the same candidates in the same order and the same double arithmetic, so both paths choose the
// same token from the same random draw. False when the candidates the GPU returned do not cover
// the set Sampler would draw from (top_p over a flat distribution, or a large top_k); the caller
// then runs the full host path on the row.
constexpr int32_t kGpuCandidates = 1024;

bool pick_from_stats(const SamplingParams& p, std::mt19937_64& rng,
                     const cuda::LogitStats& st, int32_t vocab, Sample& out) {
  const double mx_raw = st.max_logit;
  if (p.greedy()) {
    out.token = st.argmax;
    return true;
  }
  const auto& cand = st.top;
  const int32_t have = static_cast<int32_t>(cand.size());
  const int32_t keep = (p.top_k > 0 && p.top_k < vocab) ? p.top_k : vocab;
  const double inv_t = 1.0 / p.temperature;
  const double mx = cand.empty() ? mx_raw * inv_t : cand[0].first * inv_t;
  double sum = 0;
  std::vector<double> probs;
  if (keep <= have) {
    probs.resize(keep);
    for (int32_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(cand[i].first * inv_t - mx);
  } else if (keep == vocab && p.top_p < 1.0f) {
    probs.resize(have);
    for (int32_t i = 0; i < have; ++i) probs[i] = std::exp(cand[i].first * inv_t - mx);
    sum = st.temperature_sum;
  } else {
    return false;
  }
  if (probs.empty()) return false;
  for (auto& q : probs) q /= sum;
  const bool complete = static_cast<int32_t>(probs.size()) >= keep;
  const std::optional<int32_t> chosen = draw_nucleus(probs, p.top_p, complete, rng);
  if (!chosen) return false;
  out.token = cand[*chosen].second;
  return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Status Generator::validate(std::span<const GenerationRequest> requests) const {
  const auto& cfg = model_.config();
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const std::string who = "request " + std::to_string(i);
    if (r.prompt.empty()) return invalid_argument(who + ": the prompt is empty");
    if (r.max_new_tokens < 1)
      return invalid_argument(who + ": max_new_tokens must be >= 1 (got " + std::to_string(r.max_new_tokens) + ")");
    for (int32_t t : r.prompt)
      if (t < 0 || t >= cfg.vocab_size)
        return invalid_argument(who + ": token id " + std::to_string(t) + " is outside the vocabulary of " +
                                std::to_string(cfg.vocab_size));
    const int64_t need = static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
    if (need > cfg.max_position_embeddings)
      return invalid_argument(who + ": prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_new_tokens (" +
                              std::to_string(r.max_new_tokens) + ") exceeds the model's context of " +
                              std::to_string(cfg.max_position_embeddings) + " tokens");
    STRATA_RETURN_IF_ERROR(r.sampling.validate().with_context(who));
  }
  return Status::ok();
}

Result<std::vector<GenerationResult>> Generator::generate(std::span<const GenerationRequest> requests,
                                                          GenerationStats* stats,
                                                          const FinishCallback& on_finish,
                                                          const TokenCallback& on_token) {
  STRATA_RETURN_IF_ERROR(validate(requests));
  const auto& cfg = model_.config();
  const int32_t n = static_cast<int32_t>(requests.size());
  std::vector<GenerationResult> results(n);
  if (n == 0) return results;

  int32_t max_len = 0;
  for (const auto& r : requests)
    max_len = std::max<int32_t>(max_len, static_cast<int32_t>(r.prompt.size()) + r.max_new_tokens);
  STRATA_RETURN_IF_ERROR(model_.reset(n, max_len));

  std::vector<Sampler> samplers;
  samplers.reserve(n);
  for (const auto& r : requests) samplers.emplace_back(r.sampling);
  std::vector<int32_t> length(n);   // tokens in the cache (prompt + generated so far)
  std::vector<int32_t> active;      // slots still generating, in slot order

  // On a CUDA backend the pass over the vocabulary (argmax, softmax sums, best candidates) runs on
  // the GPU and the host finishes each choice from a short list. Those rows draw from their own
  // generator, seeded and used as Sampler uses its own, so both paths pick the same tokens.
  const bool gpu_sampling = cuda::is_cuda_backend(model_.backend());
  std::vector<std::mt19937_64> rngs;
  if (gpu_sampling)
    for (const auto& r : requests) rngs.emplace_back(r.sampling.seed);

  // Records the token chosen for `slot`; returns false once the sequence is done.
  auto record = [&](int32_t slot, const Sample& s, std::vector<std::pair<int32_t, float>> top) {
    const GenerationRequest& req = requests[slot];
    GenerationResult& res = results[slot];
    res.tokens.push_back(s.token);
    res.logprobs.push_back(s.logprob);
    if (req.top_logprobs > 0) res.top_logprobs.push_back(std::move(top));
    bool done = false;
    if (on_token && !on_token(static_cast<size_t>(slot), s.token)) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (!req.ignore_eos && cfg.is_eos(s.token)) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (static_cast<int32_t>(res.tokens.size()) >= req.max_new_tokens) {
      res.finish = FinishReason::kLength;
      done = true;
    }
    if (done && on_finish) on_finish(static_cast<size_t>(slot), res);
    return !done;
  };

  // Chooses the next token of each slot in `slots` from logits [slots.size(), V] (host F32) and
  // returns the slots still running.
  auto advance_all = [&](const Tensor& logits, std::span<const int32_t> slots) -> Result<std::vector<int32_t>> {
    const int64_t V = logits.dim(1);
    std::vector<int32_t> still;
    auto row_of = [&](size_t i) {
      return std::span<const float>(logits.data<float>() + i * V, static_cast<size_t>(V));
    };
    if (!gpu_sampling) {
      for (size_t i = 0; i < slots.size(); ++i) {
        const int32_t slot = slots[i];
        const auto row = row_of(i);
        Sample s = samplers[slot].sample(row);
        std::vector<std::pair<int32_t, float>> top;
        if (requests[slot].top_logprobs > 0) top = top_logprobs(row, requests[slot].top_logprobs);
        if (record(slot, s, std::move(top))) still.push_back(slot);
      }
      return still;
    }
    std::vector<cuda::LogitQuery> queries(slots.size());
    for (size_t i = 0; i < slots.size(); ++i) {
      const GenerationRequest& req = requests[slots[i]];
      if (!req.sampling.greedy()) {
        queries[i].temperature = req.sampling.temperature;
        queries[i].candidates = req.sampling.top_k > 0 && req.sampling.top_k <= kGpuCandidates
                                    ? req.sampling.top_k
                                    : kGpuCandidates;
      }
      queries[i].candidates = std::max(queries[i].candidates, req.top_logprobs);
    }
    STRATA_ASSIGN_OR_RETURN(std::vector<cuda::LogitStats> stats,
                            cuda::logit_stats(model_.backend(), logits, queries));
    for (size_t i = 0; i < slots.size(); ++i) {
      const int32_t slot = slots[i];
      const GenerationRequest& req = requests[slot];
      const cuda::LogitStats& st = stats[i];
      const auto row = row_of(i);
      Sample s;
      if (!pick_from_stats(req.sampling, rngs[slot], st, static_cast<int32_t>(V), s)) {
        // The host path on this row, with this row's generator (Sampler's algorithm).
        std::vector<std::pair<float, int32_t>> all(static_cast<size_t>(V));
        for (int32_t t = 0; t < V; ++t) all[t] = {row[t], t};
        std::stable_sort(all.begin(), all.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
        cuda::LogitStats full = st;
        full.top = std::move(all);
        STRATA_CHECK(pick_from_stats(req.sampling, rngs[slot], full, static_cast<int32_t>(V), s),
                     "sampling over the whole row must succeed");
      }
      // log-softmax at the token as token_logprob() computes it: (x - max) - log(sum).
      s.logprob = static_cast<float>(static_cast<double>(row[s.token]) - st.max_logit - st.log_sum);
      std::vector<std::pair<int32_t, float>> top;
      if (req.top_logprobs > 0) {
        const double lse = st.max_logit + st.log_sum;
        const int32_t k = std::min<int32_t>(req.top_logprobs, static_cast<int32_t>(st.top.size()));
        for (int32_t j = 0; j < k; ++j)
          top.emplace_back(st.top[j].second, static_cast<float>(st.top[j].first - lse));
      }
      if (record(slot, s, std::move(top))) still.push_back(slot);
    }
    return still;
  };

  // Step 0: prefill every prompt in one ragged batch; logits of each prompt's last token.
  auto t0 = std::chrono::steady_clock::now();
  compute::TokenBatch batch;
  std::vector<int32_t> rows;
  for (int32_t s = 0; s < n; ++s) {
    batch.add_sequence(s, 0, requests[s].prompt);
    rows.push_back(batch.size() - 1);
    length[s] = static_cast<int32_t>(requests[s].prompt.size());
  }
  STRATA_ASSIGN_OR_RETURN(Tensor logits, model_.forward(batch, rows));
  std::vector<int32_t> all_slots(n);
  for (int32_t s = 0; s < n; ++s) all_slots[s] = s;
  STRATA_ASSIGN_OR_RETURN(active, advance_all(logits, all_slots));
  if (stats) {
    stats->prefill_s += seconds_since(t0);
    stats->prompt_tokens += batch.size();
  }

  // Decode: one new token per running sequence per step.
  t0 = std::chrono::steady_clock::now();
  while (!active.empty()) {
    batch = {};
    rows.clear();
    for (int32_t s : active) {
      int32_t last = results[s].tokens.back();
      batch.add_sequence(s, length[s], {&last, 1});
      rows.push_back(batch.size() - 1);
      ++length[s];
    }
    STRATA_ASSIGN_OR_RETURN(logits, model_.forward(batch, rows));
    STRATA_ASSIGN_OR_RETURN(std::vector<int32_t> still, advance_all(logits, active));
    active.swap(still);
    if (stats) ++stats->decode_steps;
  }
  if (stats) {
    stats->decode_s += seconds_since(t0);
    for (const auto& r : results) stats->generated_tokens += static_cast<int64_t>(r.tokens.size());
  }
  STRATA_RETURN_IF_ERROR(model_.reset(0, 0));
  return results;
}

}  // namespace strata::runtime
