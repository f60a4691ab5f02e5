#include "testing/hf_reference.h"

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "model/safetensors.h"

namespace strata::testing {

HfReference load_hf_reference(const std::filesystem::path& dir) {
  HfReference ref;
  std::ifstream in(dir / "reference.json");
  STRATA_CHECK(in.good(), (dir / "reference.json").string() + " is missing");
  nlohmann::json j = nlohmann::json::parse(in);
  auto file = model::SafetensorsFile::open(dir / "reference.safetensors");
  STRATA_CHECK(file.is_ok(), file.status().to_string());
  for (size_t i = 0; i < j["prompts"].size(); ++i) {
    const auto& p = j["prompts"][i];
    ref.prompts.push_back(p["prompt"].get<std::vector<int32_t>>());
    ref.greedy.push_back(p["greedy"].get<std::vector<int32_t>>());
    ref.margins.push_back(p["top2_margins"].get<std::vector<float>>());
    auto l = (*file)->read("prompt" + std::to_string(i) + ".logits");
    auto s = (*file)->read("prompt" + std::to_string(i) + ".step_logits");
    STRATA_CHECK(l.is_ok() && s.is_ok(), "reference logits of prompt " + std::to_string(i));
    ref.logits.push_back(*l);
    ref.step_logits.push_back(*s);
  }
  return ref;
}

}  // namespace strata::testing
