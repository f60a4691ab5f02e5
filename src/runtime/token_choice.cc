#include "runtime/token_choice.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>

#include "common/check.h"

namespace strata::runtime {

TokenEdits::TokenEdits(const GenerationRequest& req, int64_t vocab) : req_(&req), vocab_(vocab) {
  if (req.repetition_penalty != 1)
    for (int32_t t : req.prompt)
      if (compute::TokenEdit* e = edit(t)) e->penalty = req.repetition_penalty;
  for (const auto& [t, bias] : req.logit_bias)
    if (compute::TokenEdit* e = edit(t)) e->add += bias;
}

compute::TokenEdit* TokenEdits::edit(int64_t t) {
  if (t < 0 || t >= vocab_) return nullptr;
  auto [it, fresh] = at_.try_emplace(static_cast<int32_t>(t), edits_.size());
  if (fresh) edits_.push_back({static_cast<int32_t>(t)});
  return &edits_[it->second];
}

void TokenEdits::generated(int32_t token) {
  const GenerationRequest& req = *req_;
  if (req.repetition_penalty == 1 && req.presence_penalty == 0 && req.frequency_penalty == 0) return;
  compute::TokenEdit* e = edit(token);
  if (!e) return;
  if (req.repetition_penalty != 1) e->penalty = req.repetition_penalty;
  if (req.presence_penalty != 0 || req.frequency_penalty != 0)
    e->subtract = req.presence_penalty + req.frequency_penalty * static_cast<float>(++count_[token]);
}

namespace {

// The logit at `token` when the row's statistics hold it (its maximum or one of its best).
std::optional<float> value_in(const compute::LogitStats& st, int32_t token) {
  if (token == st.argmax) return st.max_logit;
  for (const auto& [value, t] : st.top)
    if (t == token) return value;
  return std::nullopt;
}

// Whether `a` changes no logit's value, only refuses tokens (a mask, end tokens, min_p): the
// value at a token it keeps is the model's.
bool refuses_only(const compute::RowAdjustment& a) {
  return std::all_of(a.edits.begin(), a.edits.end(), [](const compute::TokenEdit& e) {
    return e.refuse || (e.penalty == 1.0f && e.subtract == 0.0f && e.add == 0.0f);
  });
}

}  // namespace

compute::RowAdjustment logit_adjustment(const GenerationRequest& req, std::span<const compute::TokenEdit> edits,
                                        bool too_early,
                                        std::span<const int64_t> eos_ids, const AllowedTokens* mask, int64_t row,
                                        int64_t vocab) {
  compute::RowAdjustment a;
  a.row = row;
  a.edits.assign(edits.begin(), edits.end());
  // The end tokens a request may stop on: refused before min_tokens; allowed by a mask once the
  // constrained text is complete (so they keep their logits, -inf when too early).
  std::vector<int32_t> ends(req.stop_token_ids.begin(), req.stop_token_ids.end());
  if (!req.ignore_eos)
    for (int64_t e : eos_ids) ends.push_back(static_cast<int32_t>(e));
  if (too_early)
    for (int32_t t : ends) {
      if (t < 0 || t >= vocab) continue;
      auto it = std::find_if(a.edits.begin(), a.edits.end(), [t](const compute::TokenEdit& e) { return e.token == t; });
      if (it == a.edits.end()) it = a.edits.insert(a.edits.end(), compute::TokenEdit{t});
      it->refuse = true;
    }
  if (mask) a.allowed = mask->with_ends(ends, vocab);
  if (req.min_p > 0 && !req.sampling.greedy()) {
    // p_t < min_p * p_max  <=>  x_t < x_max + T log(min_p)
    a.min_p = true;
    a.min_p_offset = req.sampling.temperature * std::log(req.min_p);
  }
  return a;
}

std::vector<float> adjusted_logits(const GenerationRequest& req, std::span<const int32_t> generated,
                                   std::span<const float> row, bool too_early, std::span<const int64_t> eos_ids,
                                   const AllowedTokens* mask) {
  std::vector<float> x(row.begin(), row.end());
  const auto V = static_cast<int64_t>(x.size());
  TokenEdits edits(req, V);
  for (int32_t t : generated) edits.generated(t);
  const Status adjusted = compute::adjust_row(x, logit_adjustment(req, edits.edits(), too_early, eos_ids, mask, 0, V));
  STRATA_CHECK(adjusted.is_ok(), adjusted.to_string());
  return x;
}

Result<std::vector<TokenChoice>> choose_tokens(compute::Backend& backend, const Tensor& logits,
                                               std::span<const RowToChoose> rows, std::span<const int64_t> eos_ids,
                                               size_t rows_at_once) {
  if (logits.rank() != 2 || logits.dim(0) != static_cast<int64_t>(rows.size()))
    return invalid_argument("choose_tokens: " + std::to_string(rows.size()) + " rows to choose for logits " +
                            shape_string(logits.shape()));
  const int64_t V = logits.dim(1);
  const size_t R = rows.size();
  rows_at_once = std::max<size_t>(rows_at_once, 1);
  // A row whose request changes its logits is chosen from its adjusted copy, unless the changes
  // only refuse tokens (a constraint's mask, min_tokens' end tokens) and the choice needs no
  // candidates (greedy, or a draw over the whole row): that row is chosen from the model's own
  // row under one mask, in its statistics and its draw, with no copy. The statistics of the
  // model's own row give every row's logprobs.
  std::vector<compute::LogitQuery> queries(R), adjusted_queries;
  std::vector<compute::RowAdjustment> adjustments;
  std::vector<bool> adjusted(R, false);
  std::vector<std::vector<uint64_t>> masks(R);  // a row chosen under a mask: its mask
  for (size_t i = 0; i < R; ++i) {
    const GenerationRequest& req = *rows[i].req;
    const compute::LogitQuery want = logit_query(req.sampling, req.top_logprobs, V);
    const bool too_early = rows[i].generated < req.min_tokens;
    if (!too_early && !req.adjusts_logits()) {
      queries[i] = want;
      continue;
    }
    compute::RowAdjustment a =
        logit_adjustment(req, rows[i].edits, too_early, eos_ids, rows[i].mask, static_cast<int64_t>(i), V);
    if (!a.min_p && refuses_only(a) && logit_query(req.sampling, 0, V).candidates == 0) {
      masks[i] = a.allowed.empty() ? std::vector<uint64_t>(static_cast<size_t>((V + 63) / 64), ~uint64_t{0})
                                   : std::move(a.allowed);
      for (const compute::TokenEdit& e : a.edits)
        if (e.refuse) masks[i][static_cast<size_t>(e.token / 64)] &= ~(uint64_t{1} << (e.token % 64));
      queries[i] = want;
      queries[i].allowed = masks[i];
      continue;
    }
    adjusted[i] = true;
    adjustments.push_back(std::move(a));
    compute::LogitQuery chosen_from = want;
    chosen_from.log_sum = false;  // the logprobs are the model's own row's
    adjusted_queries.push_back(chosen_from);
    queries[i].candidates = req.top_logprobs;
  }
  // Statistics that sort candidates take at most rows_at_once rows a call.
  auto stats_of = [&](const Tensor& x, std::span<const compute::LogitQuery> q) -> Result<std::vector<compute::LogitStats>> {
    const bool sorts = std::any_of(q.begin(), q.end(), [](const compute::LogitQuery& e) { return e.candidates > 0; });
    if (!sorts || q.size() <= rows_at_once) return backend.logit_stats(x, q);
    std::vector<compute::LogitStats> all;
    all.reserve(q.size());
    for (size_t b = 0; b < q.size(); b += rows_at_once) {
      const size_t e = std::min(q.size(), b + rows_at_once);
      STRATA_ASSIGN_OR_RETURN(std::vector<compute::LogitStats> part,
                              backend.logit_stats(x.slice_rows(static_cast<int64_t>(b), static_cast<int64_t>(e)),
                                                  q.subspan(b, e - b)));
      std::move(part.begin(), part.end(), std::back_inserter(all));
    }
    return all;
  };
  STRATA_ASSIGN_OR_RETURN(std::vector<compute::LogitStats> stats, stats_of(logits, queries));
  std::vector<TokenChoice> choices(R);
  for (size_t i = 0; i < R; ++i) {
    const compute::LogitStats& st = stats[i];
    // A NaN or an infinity anywhere in the row makes the maximum or the log-sum non-finite.
    if (!std::isfinite(st.max_logit) || !std::isfinite(st.log_sum))
      choices[i].error = "the model's logits hold NaN or infinite values at generated token " +
                         std::to_string(rows[i].generated) +
                         " (the weights hold NaN or infinite values, or the computation overflowed)";
  }
  // A row its changes leave no token to choose from.
  auto nothing_left = [&](size_t i) {
    const std::string at_token = " at generated token " + std::to_string(rows[i].generated);
    if (const AllowedTokens* mask = rows[i].mask) {
      choices[i].error = std::string("no token of the vocabulary continues the ") + rows[i].req->constraint->name() +
                         at_token +
                         (mask->complete ? " (the text is complete but min_tokens or ignore_eos forbids ending it)"
                                         : " (the constraint may need a deeper nesting than strata allows, or "
                                           "min_p or logit_bias removed every allowed token)");
    } else {
      choices[i].error = "the request's logit_bias and min_tokens leave no token to choose" + at_token;
    }
  };
  // The logit at each row's choice in the row it was chosen from, when that is known without a
  // look-up (its statistics hold it, or the draw or the host read it).
  std::vector<std::optional<float>> picked_value(R);
  // Chooses each of `picks` (rows[i] from row `at` of x, whose statistics are *st, under the mask
  // `allowed` when not empty): draws over whole rows on the backend, all in one call; a row that
  // needs more candidates than its statistics hold comes to the host.
  struct Pick {
    size_t i;
    int64_t at;
    const compute::LogitStats* st;
    std::span<const uint64_t> allowed;
  };
  auto decide = [&](const Tensor& x, std::span<const Pick> picks) -> Status {
    std::vector<compute::RowDraw> draws;
    std::vector<size_t> drawn;
    for (const Pick& p : picks) {
      Sampler& sampler = *rows[p.i].sampler;
      const Sampler::Decision d = sampler.decide(*p.st, static_cast<int32_t>(V));
      Sample& s = choices[p.i].s;
      switch (d.kind) {
        case Sampler::Decision::Kind::kToken:
          s.token = d.token;
          picked_value[p.i] = value_in(*p.st, s.token);
          break;
        case Sampler::Decision::Kind::kWholeRow:
          draws.push_back(d.draw);
          draws.back().row = p.at;
          draws.back().allowed = p.allowed;
          drawn.push_back(p.i);
          break;
        case Sampler::Decision::Kind::kRow: {
          STRATA_CHECK(p.allowed.empty(), "choose_tokens: a row chosen under a mask needs no candidates");
          const Tensor row = backend.to_host_f32(x.slice_rows(p.at, p.at + 1));
          s.token = sampler.choose_from_row(*p.st, {row.data<float>(), static_cast<size_t>(V)});
          picked_value[p.i] = row.data<float>()[s.token];
          break;
        }
      }
    }
    if (draws.empty()) return Status::ok();
    STRATA_ASSIGN_OR_RETURN(const std::vector<compute::DrawnToken> tokens, backend.draw_tokens(x, draws));
    for (size_t j = 0; j < drawn.size(); ++j) {
      choices[drawn[j]].s.token = tokens[j].token;
      picked_value[drawn[j]] = tokens[j].logit;
    }
    return Status::ok();
  };
  {
    // The rows chosen from the model's own row: as they are, or under their masks.
    std::vector<compute::LogitStats> under_mask(R);
    std::vector<Pick> picks;
    for (size_t i = 0; i < R; ++i) {
      if (adjusted[i] || !choices[i].error.empty()) continue;
      if (masks[i].empty()) {
        picks.push_back({i, static_cast<int64_t>(i), &stats[i], {}});
        continue;
      }
      if (!(stats[i].allowed_max > -INFINITY)) {
        nothing_left(i);
        continue;
      }
      compute::LogitStats& u = under_mask[i];
      u.argmax = stats[i].allowed_argmax;
      u.max_logit = stats[i].allowed_max;
      u.log_sum = stats[i].log_sum;
      u.temperature_sum = stats[i].temperature_sum;
      picks.push_back({i, static_cast<int64_t>(i), &u, masks[i]});
    }
    STRATA_RETURN_IF_ERROR(decide(logits, picks));
  }
  // The adjusted copies, at most half the step's rows at a time: with their statistics' scratch
  // they then take no more memory than the step's own statistics did.
  const size_t chunk = std::min(rows_at_once, std::max<size_t>(1, (R + 1) / 2));
  for (size_t b = 0; b < adjustments.size(); b += chunk) {
    const size_t n = std::min(chunk, adjustments.size() - b);
    STRATA_ASSIGN_OR_RETURN(const Tensor x, backend.adjust_logits(logits, std::span(adjustments).subspan(b, n)));
    STRATA_ASSIGN_OR_RETURN(const std::vector<compute::LogitStats> xs,
                            stats_of(x, std::span(adjusted_queries).subspan(b, n)));
    std::vector<Pick> picks;
    for (size_t k = 0; k < n; ++k) {
      const auto i = static_cast<size_t>(adjustments[b + k].row);
      if (!choices[i].error.empty()) continue;
      if (!(xs[k].max_logit > -INFINITY)) {
        nothing_left(i);
        continue;
      }
      picks.push_back({i, static_cast<int64_t>(k), &xs[k], {}});
    }
    STRATA_RETURN_IF_ERROR(decide(x, picks));
    // A copy that changed values (penalties, logit_bias) holds its own at the choice, not the model's.
    for (const Pick& p : picks)
      if (!refuses_only(adjustments[b + static_cast<size_t>(p.at)])) picked_value[p.i].reset();
  }
  // Each choice's logprob is the model's: (x - max) - log(sum) of its own row, the value at the
  // token known from its choice or read from the row's best tokens, else from the backend.
  std::vector<std::pair<int64_t, int32_t>> look;
  std::vector<size_t> looked;
  for (size_t i = 0; i < R; ++i) {
    TokenChoice& c = choices[i];
    if (!c.error.empty()) continue;
    const compute::LogitStats& st = stats[i];
    // The request's top logprobs, from the model's row too.
    const int32_t k = std::min<int32_t>(rows[i].req->top_logprobs, static_cast<int32_t>(st.top.size()));
    for (int32_t j = 0; j < k; ++j)
      c.top.emplace_back(st.top[j].second, static_cast<float>(st.top[j].first - (st.max_logit + st.log_sum)));
    std::optional<float> v = picked_value[i];
    if (!v) v = value_in(st, c.s.token);
    if (v) {
      c.s.logprob = static_cast<float>(static_cast<double>(*v) - st.max_logit - st.log_sum);
    } else {
      look.emplace_back(static_cast<int64_t>(i), c.s.token);
      looked.push_back(i);
    }
  }
  if (!look.empty()) {
    STRATA_ASSIGN_OR_RETURN(const std::vector<float> values, backend.logit_values(logits, look));
    for (size_t j = 0; j < looked.size(); ++j) {
      const compute::LogitStats& st = stats[looked[j]];
      choices[looked[j]].s.logprob = static_cast<float>(static_cast<double>(values[j]) - st.max_logit - st.log_sum);
    }
  }
  return choices;
}

}  // namespace strata::runtime
