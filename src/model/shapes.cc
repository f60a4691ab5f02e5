#include "model/shapes.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "model/shapes_data.h"

namespace strata::model {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<std::string> named_shape_names() {
  std::vector<std::string> names;
  for (const auto& s : detail::embedded_shapes()) names.emplace_back(s.name);
  std::sort(names.begin(), names.end());
  return names;
}

Result<ModelConfig> named_shape(std::string_view name) {
  const std::string want = lower(name);
  for (const auto& s : detail::embedded_shapes()) {
    if (lower(s.name) != want) continue;
    const std::string source = "models/shapes/" + std::string(s.name) + ".json";
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(s.json);
    } catch (const nlohmann::json::parse_error& e) {
      return corrupt(source + ": invalid JSON: " + e.what());
    }
    return parse_config(j, source);
  }
  std::string known;
  for (const std::string& n : named_shape_names()) known += (known.empty() ? "" : ", ") + n;
  return not_found("unknown model shape '" + std::string(name) + "' (known shapes: " + known + ")");
}

}  // namespace strata::model
