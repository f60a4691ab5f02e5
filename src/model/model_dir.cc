#include "model/model_dir.h"

#include "model/weight_names.h"

namespace strata::model {

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
  Status s = files.weights->check(model_weights(files.config));
  if (!s.is_ok()) {
    return s.with_context("model directory " + dir.string() + " does not match its config.json");
  }
  return files;
}

}  // namespace strata::model
