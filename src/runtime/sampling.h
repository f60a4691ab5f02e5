// Sampler: picks the next token from a row of logits, greedily or by seeded sampling with
// temperature, top-k and top-p applied in that order (as transformers does). One Sampler per
// sequence: it owns that sequence's random stream, so results do not depend on batch makeup.
// Not thread safe.
#pragma once

#include <cstdint>
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

// log-softmax of logits at `token`, computed stably in double.
float token_logprob(std::span<const float> logits, int32_t token);

}  // namespace strata::runtime
