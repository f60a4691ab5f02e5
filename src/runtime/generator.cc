#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <utility>

#include "common/check.h"
#include "compute/logit_stats.h"

namespace strata::runtime {

std::vector<float> adjusted_logits(const GenerationRequest& req, std::span<const int32_t> generated,
                                   std::span<const float> row, bool too_early, std::span<const int64_t> eos_ids,
                                   std::span<const uint8_t> allowed, bool ends_allowed) {
  std::vector<float> x(row.begin(), row.end());
  const auto V = static_cast<int64_t>(x.size());
  if (req.repetition_penalty != 1) {
    std::vector<bool> seen(x.size());
    for (std::span<const int32_t> tokens : {std::span<const int32_t>(req.prompt), generated})
      for (int32_t t : tokens)
        if (t >= 0 && t < V) seen[static_cast<size_t>(t)] = true;
    for (size_t t = 0; t < x.size(); ++t)
      if (seen[t]) x[t] = x[t] > 0 ? x[t] / req.repetition_penalty : x[t] * req.repetition_penalty;
  }
  if (req.presence_penalty != 0 || req.frequency_penalty != 0) {
    std::unordered_map<int32_t, int32_t> count;
    for (int32_t t : generated) ++count[t];
    for (const auto& [t, n] : count)
      if (t >= 0 && t < V) x[static_cast<size_t>(t)] -= req.presence_penalty + req.frequency_penalty * static_cast<float>(n);
  }
  for (const auto& [t, bias] : req.logit_bias)
    if (t >= 0 && t < V) x[static_cast<size_t>(t)] += bias;
  if (too_early) {
    if (!req.ignore_eos)
      for (int64_t e : eos_ids)
        if (e >= 0 && e < V) x[static_cast<size_t>(e)] = -INFINITY;
    for (int32_t t : req.stop_token_ids)
      if (t >= 0 && t < V) x[static_cast<size_t>(t)] = -INFINITY;
  }
  // The constraint's mask comes before min_p (and the sampler's temperature, top_k and top_p), so
  // every filter sees the distribution over the tokens the constraint allows.
  if (!allowed.empty()) {
    // The end tokens keep their logits (-inf when too early) when the constrained text is complete.
    std::vector<std::pair<size_t, float>> ends;
    if (ends_allowed) {
      if (!req.ignore_eos)
        for (int64_t e : eos_ids)
          if (e >= 0 && e < V) ends.emplace_back(static_cast<size_t>(e), x[static_cast<size_t>(e)]);
      for (int32_t t : req.stop_token_ids)
        if (t >= 0 && t < V) ends.emplace_back(static_cast<size_t>(t), x[static_cast<size_t>(t)]);
    }
    for (size_t t = 0; t < x.size(); ++t)
      if (t >= allowed.size() || !allowed[t]) x[t] = -INFINITY;
    for (const auto& [t, v] : ends) x[t] = v;
  }
  if (req.min_p > 0 && !req.sampling.greedy() && !x.empty()) {
    // p_t < min_p * p_max  <=>  x_t < x_max + T log(min_p)
    const float mx = *std::max_element(x.begin(), x.end());
    const float floor = mx + req.sampling.temperature * std::log(req.min_p);
    for (float& v : x)
      if (v < floor) v = -INFINITY;
  }
  return x;
}

std::string ConstraintMaskCache::key_of(const text::Constraint& constraint, const text::ConstraintState& state) {
  const text::Constraint* which = &constraint;  // the key starts with the constraint's address
  std::string key(reinterpret_cast<const char*>(&which), sizeof which);
  return key + state.key();
}

size_t ConstraintMaskCache::limit(const text::TokenTrie& trie) const {
  return std::max<size_t>(16, (size_t{64} << 20) / static_cast<size_t>(std::max<int64_t>(1, trie.vocab())));
}

void ConstraintMaskCache::fill(std::span<const Want> wants) {
  if (wants.empty()) return;
  auto missing = [&] {
    std::vector<std::pair<std::string, const Want*>> m;
    std::unordered_map<std::string, bool> seen;
    for (const Want& w : wants) {
      std::string key = key_of(*w.constraint, *w.state);
      if (sets_.count(key) == 0 && seen.emplace(key, true).second) m.emplace_back(std::move(key), &w);
    }
    return m;
  };
  auto todo = missing();
  if (todo.empty()) return;
  if (sets_.size() + todo.size() > limit(*wants[0].trie)) {  // start again: this step's sets stay
    sets_.clear();
    todo = missing();
  }
  std::vector<AllowedTokens> made(todo.size());
  auto walk = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Want& w = *todo[static_cast<size_t>(i)].second;
      w.trie->allowed(*w.state, made[static_cast<size_t>(i)].allowed);
      made[static_cast<size_t>(i)].complete = w.state->complete();
    }
  };
  if (todo.size() >= 2 && threads_ != 1) {
    if (!pool_) pool_ = std::make_unique<ThreadPool>(threads_);
    pool_->parallel_for(static_cast<int64_t>(todo.size()), walk);
  } else {
    walk(0, static_cast<int64_t>(todo.size()));
  }
  for (size_t i = 0; i < todo.size(); ++i) sets_.emplace(std::move(todo[i].first), std::move(made[i]));
  misses_ += static_cast<int64_t>(todo.size());
}

const AllowedTokens& ConstraintMaskCache::get(const text::TokenTrie& trie, const text::Constraint& constraint,
                                              const text::ConstraintState& state) {
  std::string key = key_of(constraint, state);
  if (auto it = sets_.find(key); it != sets_.end()) return it->second;
  if (sets_.size() >= limit(trie)) sets_.clear();
  ++misses_;
  AllowedTokens& a = sets_[std::move(key)];
  trie.allowed(state, a.allowed);
  a.complete = state.complete();
  return a;
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kError: return "error";
  }
  return "?";
}

namespace {

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
  std::vector<text::ConstraintState> states(static_cast<size_t>(n));  // structured output's progress
  ConstraintMaskCache masks;
  samplers.reserve(n);
  for (size_t i = 0; i < requests.size(); ++i) {
    samplers.emplace_back(requests[i].sampling);
    if (requests[i].constraint) states[i] = requests[i].constraint->start();
  }
  std::vector<int32_t> length(n);   // tokens in the cache (prompt + generated so far)
  std::vector<int32_t> active;      // slots still generating, in slot order

  // Records the token chosen for `slot`; returns false once the sequence is done.
  auto record = [&](int32_t slot, const Sample& s, std::vector<std::pair<int32_t, float>> top) {
    const GenerationRequest& req = requests[slot];
    GenerationResult& res = results[slot];
    text::ConstraintState& state = states[static_cast<size_t>(slot)];
    const bool end_token = (!req.ignore_eos && cfg.is_eos(s.token)) ||
                           std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), s.token) != req.stop_token_ids.end();
    if (req.constraint && !end_token)
      for (unsigned char c : req.trie->text(s.token)) {
        const bool fed = state.feed(c);  // the mask allowed only tokens that continue the text
        STRATA_CHECK(fed);
      }
    res.tokens.push_back(s.token);
    res.logprobs.push_back(s.logprob);
    if (req.top_logprobs > 0) res.top_logprobs.push_back(std::move(top));
    bool done = false;
    if (on_token && !on_token(static_cast<size_t>(slot), s.token)) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (req.constraint && state.complete() && state.dead_end()) {
      res.finish = FinishReason::kStop;  // the text is whole and nothing may follow it
      done = true;
    } else if (end_token) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (static_cast<int32_t>(res.tokens.size()) >= req.max_new_tokens) {
      res.finish = FinishReason::kLength;
      res.constraint_incomplete = req.constraint && !state.complete();
      done = true;
    }
    if (done && on_finish) on_finish(static_cast<size_t>(slot), res);
    return !done;
  };

  // Chooses the next token of each slot in `slots` from logits [slots.size(), V] (host F32) and
  // returns the slots still running. The backend computes each row's statistics where the logits
  // are (on the GPU for a CUDA backend) and the samplers finish each choice from them.
  auto advance_all = [&](const Tensor& logits, std::span<const int32_t> slots) -> Result<std::vector<int32_t>> {
    const int64_t V = logits.dim(1);
    std::vector<compute::LogitQuery> queries(slots.size());
    for (size_t i = 0; i < slots.size(); ++i)
      queries[i] = logit_query(requests[slots[i]].sampling, requests[slots[i]].top_logprobs);
    STRATA_ASSIGN_OR_RETURN(std::vector<compute::LogitStats> stats, model_.backend().logit_stats(logits, queries));
    // The step's constrained sequences' allowed sets, the missing ones computed side by side.
    std::vector<ConstraintMaskCache::Want> wants;
    for (int32_t slot : slots)
      if (requests[slot].constraint)
        wants.push_back({requests[slot].trie.get(), requests[slot].constraint.get(), &states[static_cast<size_t>(slot)]});
    masks.fill(wants);
    std::vector<int32_t> still;
    for (size_t i = 0; i < slots.size(); ++i) {
      const int32_t slot = slots[i];
      const GenerationRequest& req = requests[slot];
      const compute::LogitStats& st = stats[i];
      // A NaN or an infinity anywhere in the row makes the maximum or the log-sum non-finite.
      if (!std::isfinite(st.max_logit) || !std::isfinite(st.log_sum)) {
        GenerationResult& res = results[slot];
        res.finish = FinishReason::kError;
        res.error = "the model's logits hold NaN or infinite values at generated token " +
                    std::to_string(res.tokens.size()) +
                    " (the weights hold NaN or infinite values, or the computation overflowed)";
        if (on_finish) on_finish(static_cast<size_t>(slot), res);
        continue;
      }
      const std::span<const float> row{logits.data<float>() + i * V, static_cast<size_t>(V)};
      Sample s;
      const bool too_early = static_cast<int32_t>(results[slot].tokens.size()) < req.min_tokens;
      if (too_early || req.adjusts_logits()) {
        const AllowedTokens* mask = nullptr;
        if (req.constraint) mask = &masks.get(*req.trie, *req.constraint, states[static_cast<size_t>(slot)]);
        std::vector<float> x = adjusted_logits(req, results[slot].tokens, row, too_early, cfg.eos_token_ids,
                                               mask ? std::span<const uint8_t>(mask->allowed) : std::span<const uint8_t>(),
                                               mask && mask->complete);
        if (mask && std::none_of(x.begin(), x.end(), [](float v) { return v > -INFINITY; })) {
          GenerationResult& res = results[slot];
          res.finish = FinishReason::kError;
          res.error = std::string("no token of the vocabulary continues the ") + req.constraint->name() +
                      " at generated token " + std::to_string(res.tokens.size()) +
                      (mask->complete ? " (the text is complete but min_tokens or ignore_eos forbids ending it)"
                                      : " (the constraint may need a deeper nesting than strata allows, or "
                                        "min_p or logit_bias removed every allowed token)");
          if (on_finish) on_finish(static_cast<size_t>(slot), res);
          continue;
        }
        const Tensor m = Tensor::wrap(x.data(), DType::kF32, {1, V}, MemoryKind::kHost, nullptr);
        auto ms = compute::logit_stats_on_host(m, {&queries[i], 1});
        STRATA_RETURN_IF_ERROR(ms.status());
        s = samplers[slot].sample((*ms)[0], x);
        s.logprob = static_cast<float>(static_cast<double>(row[s.token]) - st.max_logit - st.log_sum);
      } else {
        s = samplers[slot].sample(st, row);
      }
      std::vector<std::pair<int32_t, float>> top;
      if (req.top_logprobs > 0) {
        const double lse = st.max_logit + st.log_sum;
        const int32_t k = std::min<int32_t>(req.top_logprobs, static_cast<int32_t>(st.top.size()));
        for (int32_t j = 0; j < k; ++j) top.emplace_back(st.top[j].second, static_cast<float>(st.top[j].first - lse));
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
    if (interrupt_ && interrupt_->load()) {
      STRATA_RETURN_IF_ERROR(model_.reset(0, 0));
      return cancelled("interrupted after " + std::to_string(stats ? stats->decode_steps : 0) + " decode steps");
    }
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
