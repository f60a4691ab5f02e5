// The Hugging Face reference outputs of a fixture in tests/data/fixtures (made by
// tests/data/make_fixtures.py): prompts, greedy continuations with their top-2 margins, and the
// logits transformers computed. Aborts on a missing or malformed fixture (a broken test setup).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "common/tensor.h"

namespace strata::testing {

struct HfReference {
  std::vector<std::vector<int32_t>> prompts, greedy;
  std::vector<std::vector<float>> margins;  // top-2 logit margin at each greedy step
  std::vector<Tensor> logits;               // [prompt_len, vocab] per prompt
  std::vector<Tensor> step_logits;          // [steps, vocab] per prompt
};

HfReference load_hf_reference(const std::filesystem::path& fixture_dir);

}  // namespace strata::testing
