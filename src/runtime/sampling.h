// Sampler: picks the next token from a row of logits, greedily or by seeded sampling with
// temperature, top-k and top-p applied in that order (as transformers does), from the row's
// statistics (compute/logit_stats.h) that the backend computes where the logits are, so one
// sampling path serves every backend. One Sampler per sequence: it owns that sequence's random
// stream, so results do not depend on batch makeup. Not thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "common/status.h"
#include "compute/logit_stats.h"

namespace strata::runtime {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = no limit
  float top_p = 1.0f;        // 1 = no limit
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f || top_k == 1; }
  // Checks ranges; the error names the field.
  Status validate() const;
};

struct Sample {
  int32_t token = 0;
  float logprob = 0.0f;  // log-softmax of the raw logits at `token`
};

// Candidates a sampled (not greedy) row asks the backend for when its top_k does not bound them.
inline constexpr int32_t kSampleCandidates = 1024;

// The statistics sampling with `p` needs of a row, with at least `top_logprobs` candidates.
compute::LogitQuery logit_query(const SamplingParams& p, int32_t top_logprobs);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks from `stats` (made for logit_query(params)) of the row `logits`; the row itself is read
  // only when the candidates in `stats` do not cover the set to draw from: one pass for plain
  // temperature sampling over a vocabulary past them, a partial sort for a top_k beyond them or
  // a top_p nucleus reaching past them.
  Sample sample(const compute::LogitStats& stats, std::span<const float> logits);
  // The same, from the row alone.
  Sample sample(std::span<const float> logits);
  // Whether a draw reads the whole row: temperature sampling with no top_k below `vocab` and
  // top_p 1.
  bool draws_from_whole_row(int32_t vocab) const {
    return !params_.greedy() && (params_.top_k == 0 || params_.top_k >= vocab) && params_.top_p >= 1.0f;
  }
  // Such a draw over the tokens of `allowed` alone (token t: bit t % 64 of allowed[t / 64]): the
  // token sample() would draw from the row with every other token at -inf, without that row.
  // nullopt, drawing nothing, when no allowed token has a finite logit. Needs
  // draws_from_whole_row(logits.size()).
  std::optional<int32_t> draw_from_allowed(std::span<const float> logits, std::span<const uint64_t> allowed);

 private:
  int32_t draw_from_row(std::span<const float> logits, double max_logit, double tsum);
  // False when stats.top is too short for the draw (nothing drawn).
  bool pick(const compute::LogitStats& stats, int32_t vocab, int32_t* token);

  SamplingParams params_;
  std::mt19937_64 rng_;
};

// The last step of sampling: `probs` are candidates' probabilities, descending and normalised over
// every candidate there is. Keeps the smallest prefix whose probability reaches top_p (at least one
// candidate; all of them when top_p is 1), then picks one with a single 64-bit draw of `rng`.
// Returns its index, or nullopt without drawing when `probs` holds only the first candidates
// (`complete` false) and they do not reach top_p.
std::optional<int32_t> draw_nucleus(std::span<const double> probs, float top_p, bool complete,
                                    std::mt19937_64& rng);

// log-softmax of logits at `token`, computed stably in double.
float token_logprob(std::span<const float> logits, int32_t token);

}  // namespace strata::runtime
