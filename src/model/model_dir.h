// A Hugging Face model directory opened for generation: its config.json parsed and its
// safetensors weights opened and checked against the config (presence, shape, dtype) without
// reading tensor data. ModelFiles owns the weight source; it is not thread safe.
#pragma once

#include <filesystem>
#include <memory>

#include "common/status.h"
#include "model/config.h"
#include "model/weight_source.h"

namespace strata::model {

struct ModelFiles {
  ModelConfig config;
  std::unique_ptr<WeightSource> weights;
};

// Opens `dir`: config.json, then model.safetensors or the shards of
// model.safetensors.index.json, then checks every weight model_weights(config) names.
Result<ModelFiles> open_model_dir(const std::filesystem::path& dir);

}  // namespace strata::model
