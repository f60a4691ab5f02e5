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
#include "compute/logit_adjust.h"
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

// Candidates a row sampled with a top_k past the vocabulary's 1,024 best or a top_p below 1 asks
// the backend for.
inline constexpr int32_t kSampleCandidates = 1024;

// The statistics sampling with `p` needs of a row of `vocab` logits, with at least `top_logprobs`
// candidates. Plain temperature sampling (no top_k under the vocabulary, top_p 1) draws over the
// whole row and needs none.
compute::LogitQuery logit_query(const SamplingParams& p, int32_t top_logprobs, int64_t vocab);

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

  // sample()'s choice in two parts, for a row that stays where the backend computed it: first
  // what `stats` (of a row of `vocab` logits) decide, then, when they do not, the row's own part.
  struct Decision {
    enum class Kind {
      kToken,     // `token` is the choice
      kWholeRow,  // temperature sampling over the whole row: `draw` (row 0) is the draw to make
                  // (compute::draw_in_row, Backend::draw_tokens), its random number taken
      kRow,       // more candidates than `stats` hold: choose_from_row() with the row
    };
    Kind kind = Kind::kToken;
    int32_t token = 0;
    compute::RowDraw draw;
  };
  Decision decide(const compute::LogitStats& stats, int32_t vocab);
  // After a kRow decision: the choice from the host row `logits` (a partial sort, not a full one).
  int32_t choose_from_row(const compute::LogitStats& stats, std::span<const float> logits);

 private:
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
