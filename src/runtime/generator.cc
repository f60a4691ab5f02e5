#include "runtime/generator.h"
#include "runtime/token_choice.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <future>
#include <chrono>
#include <cmath>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/check.h"
#include "compute/logit_stats.h"
#include "cuda/cuda_backend.h"
#include "planner/cost_model.h"

namespace strata::runtime {

std::vector<uint64_t> AllowedTokens::with_ends(std::span<const int32_t> ends, int64_t vocab) const {
  std::vector<uint64_t> w = words;
  w.resize(static_cast<size_t>((vocab + 63) / 64), 0);
  if (complete)
    for (int32_t t : ends)
      if (t >= 0 && t < vocab) w[static_cast<size_t>(t / 64)] |= uint64_t{1} << (t % 64);
  return w;
}

AllowedTokens AllowedTokens::from_bytes(std::span<const uint8_t> allowed, bool complete) {
  AllowedTokens a;
  a.complete = complete;
  a.words.assign((allowed.size() + 63) / 64, 0);
  const size_t whole = allowed.size() / 8;
  for (size_t i = 0; i < whole; ++i) {
    // Eight 0/1 bytes to eight bits: the multiply gathers byte k's low bit into bit 56 + k.
    uint64_t v;
    std::memcpy(&v, allowed.data() + i * 8, 8);
    const uint64_t bits = ((v & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56;
    a.words[i / 8] |= bits << ((i % 8) * 8);
  }
  for (size_t t = whole * 8; t < allowed.size(); ++t)
    if (allowed[t]) a.words[t / 64] |= uint64_t{1} << (t % 64);
  return a;
}

int64_t AllowedTokens::count() const {
  int64_t n = 0;
  for (uint64_t w : words) n += std::popcount(w);
  return n;
}

std::string ConstraintMaskCache::key_of(const text::TokenTrie& trie, const text::Constraint& constraint,
                                        const text::ConstraintState& state) {
  // The key starts with the constraint's and the trie's addresses, then says which kind follows.
  const void* which[2] = {&constraint, &trie};
  std::string key(reinterpret_cast<const char*>(which), sizeof which);
  std::string mask_key = masker(trie, constraint).mask_key(state);
  if (!mask_key.empty()) return key + 'c' + mask_key;
  return key + 's' + state.key();
}

size_t ConstraintMaskCache::limit(const text::TokenTrie& trie) const {
  return std::max<size_t>(16, (size_t{64} << 23) / static_cast<size_t>(std::max<int64_t>(1, trie.vocab())));
}

const text::TokenMasker& ConstraintMaskCache::masker(const text::TokenTrie& trie, const text::Constraint& constraint) {
  auto& m = maskers_[{&constraint, &trie}];
  if (!m) m = std::make_unique<text::TokenMasker>(trie, constraint);
  return *m;
}

std::vector<const AllowedTokens*> ConstraintMaskCache::fill(std::span<const Want> wants) {
  std::vector<const AllowedTokens*> out(wants.size(), nullptr);
  if (wants.empty()) return out;
  std::vector<std::string> keys(wants.size());
  for (size_t i = 0; i < wants.size(); ++i) keys[i] = key_of(*wants[i].trie, *wants[i].constraint, *wants[i].state);
  // The wants whose sets are missing, one for each key.
  auto missing = [&] {
    std::vector<size_t> m;
    std::unordered_set<std::string_view> seen;
    for (size_t i = 0; i < wants.size(); ++i)
      if (sets_.count(keys[i]) == 0 && seen.insert(keys[i]).second) m.push_back(i);
    return m;
  };
  auto todo = missing();
  if (!todo.empty() && sets_.size() + todo.size() > limit(*wants[0].trie)) {  // start again: this step's sets stay
    sets_.clear();
    todo = missing();
  }
  std::vector<const text::TokenMasker*> maskers(todo.size());
  for (size_t j = 0; j < todo.size(); ++j) maskers[j] = &masker(*wants[todo[j]].trie, *wants[todo[j]].constraint);
  std::vector<AllowedTokens> made(todo.size());
  auto walk = [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const Want& w = wants[todo[static_cast<size_t>(j)]];
      AllowedTokens& a = made[static_cast<size_t>(j)];
      maskers[static_cast<size_t>(j)]->allowed_bits(*w.state, a.words);
      a.complete = w.state->complete();
    }
  };
  if (todo.size() >= 2 && threads_ != 1) {
    if (!pool_) pool_ = std::make_unique<ThreadPool>(threads_);
    pool_->parallel_for(static_cast<int64_t>(todo.size()), walk);
  } else {
    walk(0, static_cast<int64_t>(todo.size()));
  }
  for (size_t j = 0; j < todo.size(); ++j) sets_.emplace(keys[todo[j]], std::move(made[j]));
  misses_ += static_cast<int64_t>(todo.size());
  for (size_t i = 0; i < wants.size(); ++i) out[i] = &sets_.find(keys[i])->second;
  return out;
}

const AllowedTokens& ConstraintMaskCache::get(const text::TokenTrie& trie, const text::Constraint& constraint,
                                              const text::ConstraintState& state) {
  std::string key = key_of(trie, constraint, state);
  if (auto it = sets_.find(key); it != sets_.end()) return it->second;
  if (sets_.size() >= limit(trie)) sets_.clear();
  ++misses_;
  AllowedTokens& a = sets_[std::move(key)];
  masker(trie, constraint).allowed_bits(state, a.words);
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

// Which pages of the KV cache hold a sequence, group by group (compute::PageLayout). A request
// takes the first run of free pages that holds it, in the group with the most free pages among
// those that may take one more sequence (and one more prompt this step): the groups stay level.
// With a slot per sequence (one group, pages of the longest length) that is the lowest free slot.
class PageMap {
 public:
  explicit PageMap(const compute::PageLayout& l)
      : l_(l), used_(static_cast<size_t>(l.pages), false) {
    const int32_t groups = (l.pages + l.group_pages - 1) / l.group_pages;
    for (int32_t g = 0; g < groups; ++g)
      free_.push_back(std::min(l.group_pages, l.pages - g * l.group_pages));
    seqs_.assign(free_.size(), 0);
    prompts_.assign(free_.size(), 0);
  }

  int32_t pages_for(int64_t positions) const {
    return static_cast<int32_t>((positions + l_.page_len - 1) / l_.page_len);
  }

  // A prompt step starts: each group may take group_prompts prompts again.
  void new_step() { std::fill(prompts_.begin(), prompts_.end(), 0); }

  // The first of `n` free consecutive pages of one group, now taken; -1 when no group has them.
  int32_t place(int32_t n) {
    std::vector<size_t> order;
    for (size_t g = 0; g < free_.size(); ++g)
      if (free_[g] >= n && seqs_[g] < l_.group_seqs && prompts_[g] < l_.group_prompts) order.push_back(g);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return free_[a] > free_[b]; });
    for (size_t g : order) {
      const int32_t begin = static_cast<int32_t>(g) * l_.group_pages;
      const int32_t end = std::min(begin + l_.group_pages, l_.pages);
      for (int32_t p = begin, run = 0; p < end; ++p) {
        run = used_[static_cast<size_t>(p)] ? 0 : run + 1;
        if (run < n) continue;
        const int32_t first = p - n + 1;
        std::fill_n(used_.begin() + first, n, true);
        free_[g] -= n;
        ++seqs_[g];
        ++prompts_[g];
        return first;
      }
    }
    return -1;
  }

  void release(int32_t first, int32_t n) {
    const size_t g = static_cast<size_t>(first / l_.group_pages);
    std::fill_n(used_.begin() + first, n, false);
    free_[g] += n;
    --seqs_[g];
  }

  // Sequences of `per_seq` pages that fit the free pages (and the groups' sequence limits) now,
  // and that the whole cache holds.
  int32_t room(double per_seq) const {
    int64_t pages = 0, seqs = 0;
    for (size_t g = 0; g < free_.size(); ++g) {
      pages += free_[g];
      seqs += l_.group_seqs - seqs_[g];
    }
    return static_cast<int32_t>(std::min<double>(std::floor(static_cast<double>(pages) / per_seq + 1e-9),
                                                 static_cast<double>(seqs)));
  }
  int32_t capacity(double per_seq) const {
    const double seqs = static_cast<double>(free_.size()) * l_.group_seqs;
    return std::max<int32_t>(1, static_cast<int32_t>(std::min(std::floor(l_.pages / per_seq + 1e-9), seqs)));
  }

 private:
  compute::PageLayout l_;
  std::vector<bool> used_;
  std::vector<int32_t> free_, seqs_, prompts_;  // by group
};

}  // namespace

Status Generator::validate(const GenerationRequest& r, size_t index, int32_t max_len) const {
  const auto& cfg = model_.config();
  const std::string who = "request " + std::to_string(index);
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
  if (max_len > 0 && need > max_len)
    return invalid_argument(who + ": prompt (" + std::to_string(r.prompt.size()) + " tokens) + max_new_tokens (" +
                            std::to_string(r.max_new_tokens) + ") exceeds the " + std::to_string(max_len) +
                            " positions each slot was made for");
  return r.sampling.validate().with_context(who);
}

namespace {

// The requests of a span, in order.
class SpanFeed final : public RequestFeed {
 public:
  explicit SpanFeed(std::span<const GenerationRequest> requests) : requests_(requests) {}
  Result<const GenerationRequest*> next() override {
    return next_ < requests_.size() ? &requests_[next_++] : nullptr;
  }
  Result<const GenerationRequest*> peek() override { return next_ < requests_.size() ? &requests_[next_] : nullptr; }

 private:
  std::span<const GenerationRequest> requests_;
  size_t next_ = 0;
};

}  // namespace

Result<std::vector<GenerationResult>> Generator::generate(std::span<const GenerationRequest> requests,
                                                          GenerationStats* stats,
                                                          const FinishCallback& on_finish,
                                                          const TokenCallback& on_token) {
  // Every request is checked before any runs, so a bad one fails the call with nothing generated
  // (run() checks each again as it is admitted, for feeds that arrive one at a time).
  for (size_t i = 0; i < requests.size(); ++i) STRATA_RETURN_IF_ERROR(validate(requests[i], i, 0));
  const int32_t n = static_cast<int32_t>(requests.size());
  std::vector<GenerationResult> results(n);
  if (n == 0) return results;
  int32_t max_len = 0;
  for (const auto& r : requests)
    max_len = std::max<int32_t>(max_len, static_cast<int32_t>(r.prompt.size()) + r.max_new_tokens);
  SpanFeed feed(requests);
  auto keep = [&](size_t i, const GenerationResult& r) {
    results[i] = r;
    if (on_finish) on_finish(i, r);
  };
  STRATA_RETURN_IF_ERROR(run(feed, slots_ > 0 ? std::min(slots_, n) : n, max_len, stats, keep, on_token));
  return results;
}

Status Generator::run(RequestFeed& feed, int32_t slots, int32_t max_len, GenerationStats* stats,
                      const FinishCallback& on_finish, const TokenCallback& on_token) {
  const auto& cfg = model_.config();
  if (slots < 1) return invalid_argument("generate: slots must be >= 1 (got " + std::to_string(slots) + ")");
  // The KV cache: a slot of max_len positions per sequence, or (set_paged) pages of the same
  // rows that each request takes as many of as its prompt and max_new_tokens need.
  std::optional<compute::PageLayout> layout;
  if (paged_) {
    Result<compute::PageLayout> p = model_.reset_paged(int64_t{slots} * max_len, kPageLen);
    if (p.is_ok()) {
      layout = *p;
    } else if (p.status().code() != StatusCode::kUnsupported) {
      return p.status();
    }
  }
  if (!layout) {
    STRATA_RETURN_IF_ERROR(model_.reset(slots, max_len));
    layout = compute::PageLayout{slots, max_len, slots, slots, slots};
  }
  if (int64_t{layout->group_pages} * layout->page_len < max_len || layout->group_seqs < 1 || layout->group_prompts < 1)
    return invalid_argument("generate: the model's KV pages (" + std::to_string(layout->group_pages) + " of " +
                            std::to_string(layout->page_len) + " positions a group) cannot hold a sequence of " +
                            std::to_string(max_len) + " positions");
  PageMap pages(*layout);

  // A running sequence: its request (the feed's `index`-th), what it generated, its sampler and
  // its structured output's progress.
  struct Sequence {
    size_t index;
    const GenerationRequest* req;
    Sampler sampler;
    text::ConstraintState state;
    GenerationResult result;
    int32_t length = 0;  // tokens in its slot's cache (prompt + generated so far)
    int32_t pages = 1;   // the pages of the cache it holds, from its slot on
    std::optional<TokenEdits> edits;  // for a request with penalties or biases
  };
  std::unordered_map<int32_t, Sequence> seqs;  // by slot (its first page)
  ConstraintMaskCache masks;
  int64_t generated = 0;

  // Records the token chosen for the sequence in `slot`; returns false once it is done (and its
  // slot free again).
  auto record = [&](int32_t slot, const Sample& s, std::vector<std::pair<int32_t, float>> top) {
    Sequence& q = seqs.at(slot);
    const GenerationRequest& req = *q.req;
    GenerationResult& res = q.result;
    const bool end_token = (!req.ignore_eos && cfg.is_eos(s.token)) ||
                           std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), s.token) != req.stop_token_ids.end();
    if (req.constraint && !end_token)
      for (unsigned char c : req.trie->text(s.token)) {
        const bool fed = q.state.feed(c);  // the mask allowed only tokens that continue the text
        STRATA_CHECK(fed);
      }
    res.tokens.push_back(s.token);
    if (q.edits) q.edits->generated(s.token);
    res.logprobs.push_back(s.logprob);
    ++generated;
    if (req.top_logprobs > 0) res.top_logprobs.push_back(std::move(top));
    bool done = false;
    if (on_token && !on_token(q.index, s.token)) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (req.constraint && q.state.complete() && q.state.dead_end()) {
      res.finish = FinishReason::kStop;  // the text is whole and nothing may follow it
      done = true;
    } else if (end_token) {
      res.finish = FinishReason::kStop;
      done = true;
    } else if (static_cast<int32_t>(res.tokens.size()) >= req.max_new_tokens) {
      res.finish = FinishReason::kLength;
      res.constraint_incomplete = req.constraint && !q.state.complete();
      done = true;
    }
    return !done;
  };
  // Ends the sequence in `slot`: its result goes to on_finish, its slot is free.
  auto finish = [&](int32_t slot) {
    Sequence& q = seqs.at(slot);
    if (on_finish) on_finish(q.index, q.result);
    pages.release(slot, q.pages);
    seqs.erase(slot);
  };

  // Chooses the next token of the sequence in each slot of `step_slots` from logits
  // [step_slots.size(), V] (F32 where the backend computed them: on the GPU for a CUDA backend;
  // runtime/token_choice.h) and returns the slots still running.
  auto advance_all = [&](const Tensor& logits, std::span<const int32_t> step_slots) -> Result<std::vector<int32_t>> {
    const size_t R = step_slots.size();
    // The step's constrained sequences' allowed sets, the missing ones computed side by side.
    std::vector<ConstraintMaskCache::Want> wants;
    std::vector<size_t> want_rows;
    for (size_t i = 0; i < R; ++i)
      if (const Sequence& q = seqs.at(step_slots[i]); q.req->constraint) {
        wants.push_back({q.req->trie.get(), q.req->constraint.get(), &q.state});
        want_rows.push_back(i);
      }
    std::vector<RowToChoose> rows(R);
    for (size_t i = 0; i < R; ++i) {
      Sequence& q = seqs.at(step_slots[i]);
      rows[i] = {q.req, &q.sampler, q.edits ? q.edits->edits() : std::span<const compute::TokenEdit>(),
                 static_cast<int32_t>(q.result.tokens.size()), nullptr};
    }
    const std::vector<const AllowedTokens*> allowed = masks.fill(wants);
    for (size_t k = 0; k < want_rows.size(); ++k) rows[want_rows[k]].mask = allowed[k];
    // A step of paged KV holds up to planner::kPagedSequencesPerSlot times the `slots` sequences the
    // memory plan made the step's logits and their sampling scratch for: a quarter of `slots` rows
    // at a time then keeps that scratch within the plan.
    const size_t rows_at_once = layout->pages > slots ? static_cast<size_t>(std::max(1, slots / 4)) : R;
    STRATA_ASSIGN_OR_RETURN(std::vector<TokenChoice> choices,
                            choose_tokens(model_.backend(), logits, rows, cfg.eos_token_ids, rows_at_once));
    std::vector<int32_t> still;
    for (size_t i = 0; i < R; ++i) {
      const int32_t slot = step_slots[i];
      TokenChoice& c = choices[i];
      if (!c.error.empty()) {
        GenerationResult& res = seqs.at(slot).result;
        res.finish = FinishReason::kError;
        res.error = std::move(c.error);
        finish(slot);
        continue;
      }
      if (record(slot, c.s, std::move(c.top))) {
        still.push_back(slot);
      } else {
        finish(slot);
      }
    }
    return still;
  };

  // Gives the feed's next requests free pages, in order, while the next one finds room (a prompt
  // step of its own takes at most group_prompts of them a group); returns their slots.
  size_t admitted = 0;
  double new_tokens = 0;   // max_new_tokens of the requests admitted so far
  double pages_taken = 0;  // the pages they took
  bool drained = false;    // the feed has no more requests
  auto take = [&]() -> Result<std::vector<int32_t>> {
    std::vector<int32_t> filled;
    pages.new_step();
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(const GenerationRequest* ahead, feed.peek());
      if (!ahead) {
        drained = true;
        break;
      }
      STRATA_RETURN_IF_ERROR(validate(*ahead, admitted, max_len));
      const int32_t n = pages.pages_for(static_cast<int64_t>(ahead->prompt.size()) + ahead->max_new_tokens);
      const int32_t slot = pages.place(n);
      if (slot < 0) break;
      STRATA_ASSIGN_OR_RETURN(const GenerationRequest* req, feed.next());
      if (!req) {  // the feed stopped
        pages.release(slot, n);
        drained = true;
        break;
      }
      const auto placed = seqs.emplace(slot, Sequence{admitted++, req, Sampler(req->sampling),
                                                      req->constraint ? req->constraint->start() : text::ConstraintState(),
                                                      {}, 0, n, std::nullopt})
                              .first;
      if (req->adjusts_beyond_constraint()) placed->second.edits.emplace(*req, cfg.vocab_size);
      new_tokens += req->max_new_tokens;
      pages_taken += n;
      filled.push_back(slot);
    }
    std::sort(filled.begin(), filled.end());
    return filled;
  };
  // One step over `step_slots`: a sequence whose prompt is not all in its slot yet brings the rest
  // of it, or with `prompt_budget` >= 0 as much of the rest as the step's budget of prompt tokens
  // leaves (in the order of `step_slots`); a running one brings its last token. The logits
  // of the last token of each sequence whose prompt is now whole choose its next. Returns the
  // slots still running (those still taking their prompt included).
  auto step = [&](std::span<const int32_t> step_slots, int64_t prompt_budget) -> Result<std::vector<int32_t>> {
    compute::TokenBatch batch;
    std::vector<int32_t> rows, sampled, filling;
    // The budget goes to the sequences taking their prompt in the order of `step_slots`; the
    // batch holds every sequence in slot order (the offloading engine's GPU batches are runs of
    // slots). brings: the prompt tokens a sequence brings, -1 for a running one's last token.
    std::vector<std::pair<int32_t, int32_t>> brings;
    for (int32_t s : step_slots) {
      const Sequence& q = seqs.at(s);
      const int32_t prompt = static_cast<int32_t>(q.req->prompt.size());
      int32_t n = -1;
      if (q.length < prompt) {
        n = prompt - q.length;
        if (prompt_budget >= 0) {
          n = static_cast<int32_t>(std::min<int64_t>(n, prompt_budget));
          prompt_budget -= n;
        }
      }
      brings.emplace_back(s, n);
    }
    std::sort(brings.begin(), brings.end());
    for (const auto& [s, n] : brings) {
      Sequence& q = seqs.at(s);
      const int32_t prompt = static_cast<int32_t>(q.req->prompt.size());
      if (n >= 0) {
        if (n > 0) {
          batch.add_sequence(s, q.length, std::span<const int32_t>(q.req->prompt).subspan(q.length, n));
          q.length += n;
          if (stats) stats->prompt_tokens += n;
        }
        if (q.length < prompt) {
          filling.push_back(s);
          continue;
        }
      } else {
        int32_t last = q.result.tokens.back();
        batch.add_sequence(s, q.length, {&last, 1});
        ++q.length;
      }
      rows.push_back(batch.size() - 1);
      sampled.push_back(s);
    }
    // The constrained sequences' allowed sets for the tokens this step chooses depend only on
    // the text so far: they are computed while the model runs, so choosing finds them cached.
    std::vector<ConstraintMaskCache::Want> ahead;
    for (int32_t s : sampled)
      if (const Sequence& q = seqs.at(s); q.req->constraint)
        ahead.push_back({q.req->trie.get(), q.req->constraint.get(), &q.state});
    std::future<void> masks_ahead;
    if (!ahead.empty()) masks_ahead = std::async(std::launch::async, [&masks, &ahead] { masks.fill(ahead); });
    auto t = std::chrono::steady_clock::now();
    Result<Tensor> forward = model_.forward_for_sampling(batch, rows);
    if (stats) {
      if (forward.is_ok()) cuda::synchronize(model_.backend());  // the model's time, not the first choice's wait
      stats->model_s += seconds_since(t);
      t = std::chrono::steady_clock::now();
    }
    if (masks_ahead.valid()) masks_ahead.get();
    STRATA_ASSIGN_OR_RETURN(Tensor logits, std::move(forward));
    if (stats) {
      stats->mask_wait_s += seconds_since(t);
      t = std::chrono::steady_clock::now();
      ++stats->steps;
      stats->step_tokens += batch.size();
      stats->sampled_rows += static_cast<int64_t>(rows.size());
    }
    std::vector<int32_t> still;
    if (!sampled.empty()) {
      STRATA_ASSIGN_OR_RETURN(still, advance_all(logits, sampled));
    }
    if (stats) stats->choose_s += seconds_since(t);
    still.insert(still.end(), filling.begin(), filling.end());
    std::sort(still.begin(), still.end());
    return still;
  };
  auto since = [](std::chrono::steady_clock::time_point t0, double* into) {
    *into += seconds_since(t0);
  };
  // A model that takes prompts and decode tokens in one step starts waiting requests in the
  // decode step itself, as soon as a slot is free (no read of the weights of its own).
  const bool mixed = model_.mixed_steps();
  // The prompt tokens a mixed step carries: the chunk asked for, within the model's own limit
  // (-1: whole prompts).
  int64_t chunk = prompt_chunk_ > 0 ? prompt_chunk_ : -1;
  if (const int64_t most = model_.mixed_step_prompt_tokens(); mixed && most > 0)
    chunk = chunk < 0 ? most : std::min(chunk, most);
  bool decoded = false;  // a decode step has run

  auto t0 = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(std::vector<int32_t> active, take());
  if (!active.empty()) {
    STRATA_ASSIGN_OR_RETURN(active, step(active, -1));
  }
  if (stats) since(t0, &stats->prefill_s);

  // Otherwise waiting requests take free slots in a prompt step of their own once enough are
  // free: each prompt step reads the weights once more, and each step a slot stays empty costs a
  // token.
  while (!active.empty() || !drained) {
    if (interrupt_ && interrupt_->load()) {
      STRATA_RETURN_IF_ERROR(model_.reset(0, 0));
      return cancelled("interrupted after " + std::to_string(stats ? stats->decode_steps : 0) + " decode steps");
    }
    t0 = std::chrono::steady_clock::now();
    // Free room and the whole cache in sequences of the mean size admitted so far (with a slot
    // per sequence: free slots and slots).
    const double per_seq = admitted > 0 ? pages_taken / static_cast<double>(admitted) : 1.0;
    const int32_t room = pages.room(per_seq), capacity = pages.capacity(per_seq);
    const int32_t refill_at =
        mixed ? 1 : planner::refill_threshold(new_tokens / static_cast<double>(std::max<size_t>(1, admitted)), capacity);
    std::vector<int32_t> joined;
    if (!drained && room > 0 && (active.empty() || room >= refill_at)) {
      STRATA_ASSIGN_OR_RETURN(joined, take());
      if (active.empty() && joined.empty() && !drained)
        return internal_error("generate: a request found no room in an empty KV cache");
      if (stats && !joined.empty()) ++stats->refills;
      if (!mixed || active.empty()) {  // a prompt step of their own
        if (joined.empty()) {
          if (active.empty()) continue;  // the feed is drained
        } else {
          STRATA_ASSIGN_OR_RETURN(std::vector<int32_t> started, step(joined, -1));
          active.insert(active.end(), started.begin(), started.end());
          std::sort(active.begin(), active.end());
          if (stats) since(t0, &stats->prefill_s);
          continue;
        }
      }
    }

    // Decode: one new token per running sequence (and with a mixed step, the joining prompts, a
    // chunk of `chunk` tokens a step: the sequences taking their prompt come first, in the
    // order they were admitted, so each prompt finishes as early as the budget allows).
    std::vector<int32_t> step_slots = active;
    step_slots.insert(step_slots.end(), joined.begin(), joined.end());
    std::sort(step_slots.begin(), step_slots.end());
    if (mixed && chunk > 0) {
      std::stable_sort(step_slots.begin(), step_slots.end(), [&](int32_t a, int32_t b) {
        const Sequence& qa = seqs.at(a);
        const Sequence& qb = seqs.at(b);
        const bool fa = qa.length < static_cast<int32_t>(qa.req->prompt.size());
        const bool fb = qb.length < static_cast<int32_t>(qb.req->prompt.size());
        return fa != fb ? fa : (fa && qa.index < qb.index);
      });
    }
    STRATA_ASSIGN_OR_RETURN(active, step(step_slots, mixed ? chunk : -1));
    if (!decoded) {
      decoded = true;
      feed.decoding_started();
    }
    if (stats) {
      ++stats->decode_steps;
      since(t0, &stats->decode_s);
    }
  }
  if (stats) stats->generated_tokens += generated;
  return model_.reset(0, 0);
}

}  // namespace strata::runtime
