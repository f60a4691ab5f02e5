// Sampler: picks the next token from a row of logits, greedily or by seeded sampling with
// temperature, top-k and top-p applied in that order (as transformers does). One Sampler per
// sequence: it owns that sequence's random stream, so results do not depend on batch makeup.
// Not thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "common/status.h"

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

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  Sample sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;  // (logit, token), reused across calls
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
