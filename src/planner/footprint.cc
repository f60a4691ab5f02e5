#include "planner/footprint.h"

#include <algorithm>
#include <vector>

#include "model/weight_names.h"

namespace strata::planner {

ModelFootprint model_footprint(const model::ModelConfig& config, DType weight_dtype,
                               DType kv_dtype) {
  ModelFootprint f;
  const uint64_t wsize = dtype_size(weight_dtype);
  std::vector<uint64_t> layer_bytes(static_cast<size_t>(config.num_layers));
  for (int64_t i = 0; i < config.num_layers; ++i)
    for (const auto& spec : model::layer_weights(config, i)) {
      const int64_t n = shape_numel(spec.shape);
      f.parameters += n;
      layer_bytes[static_cast<size_t>(i)] += n * wsize;
    }
  for (const auto& spec : model::model_weights(config)) {
    if (spec.name.rfind("layers.", 0) == 0) continue;
    const int64_t n = shape_numel(spec.shape);
    f.parameters += n;
    f.other_weight_bytes += n * wsize;
  }
  // Layers differ when a mixture of experts has dense layers: the largest one, and their sum.
  uint64_t layers = 0;
  for (uint64_t b : layer_bytes) {
    f.layer_weight_bytes = std::max(f.layer_weight_bytes, b);
    layers += b;
  }
  f.total_weight_bytes = layers + f.other_weight_bytes;
  f.kv_bytes_per_token = 2ull * config.num_layers * config.kv_dim() * dtype_size(kv_dtype);
  return f;
}

}  // namespace strata::planner
