#include "model/model_dir.h"

#include <algorithm>

#include "model/weight_names.h"

namespace strata::model {

int64_t stored_layer_count(const WeightSource& source) {
  int64_t count = 0;
  for (const std::string& name : source.tensor_names()) {
    for (size_t at = name.find("layers."); at != std::string::npos; at = name.find("layers.", at + 1)) {
      if (at > 0 && name[at - 1] != '.') continue;
      size_t i = at + 7, digits = 0;
      int64_t n = 0;
      while (i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 12) {
        n = n * 10 + (name[i] - '0');
        ++i;
        ++digits;
      }
      if (digits == 0 || digits == 12 || i >= name.size() || name[i] != '.') continue;
      count = std::max(count, n + 1);
      break;
    }
  }
  return count;
}

Status check_weights(const ModelConfig& config, WeightSource& source, const std::string& where) {
  // Before model_weights(): a config claiming a billion layers must not size anything.
  if (!source.tensor_names().empty()) {
    const int64_t stored = stored_layer_count(source);
    if (stored != config.num_layers) {
      return corrupt(where + ": num_hidden_layers is " + std::to_string(config.num_layers) +
                     " in config.json but the weight files hold " + std::to_string(stored) +
                     " layers; the config and the weights are from different models (fix one of them)");
    }
  }
  return source.check(model_weights(config));
}

Result<ModelFiles> open_model_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    return not_found(dir.string() + ": model directory does not exist");
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return invalid_argument(dir.string() +
                            ": not a directory (expected a Hugging Face model directory)");
  }
  if (!std::filesystem::exists(dir / "config.json", ec)) {
    return not_found(dir.string() +
                     ": no config.json (expected a Hugging Face model directory with config.json "
                     "and model.safetensors)");
  }
  ModelFiles files;
  STRATA_ASSIGN_OR_RETURN(files.config, load_config(dir / "config.json"));
  STRATA_ASSIGN_OR_RETURN(files.weights, open_safetensors_source(dir));
  Status s = check_weights(files.config, *files.weights, dir.string());
  if (!s.is_ok()) {
    return s.with_context("model directory " + dir.string() + " does not match its config.json");
  }
  return files;
}

}  // namespace strata::model
