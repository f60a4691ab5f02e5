#include "planner/footprint.h"

#include "model/weight_names.h"

namespace strata::planner {

ModelFootprint model_footprint(const model::ModelConfig& config, DType weight_dtype,
                               DType kv_dtype) {
  ModelFootprint f;
  const uint64_t wsize = dtype_size(weight_dtype);
  for (const auto& spec : model::model_weights(config)) {
    int64_t n = shape_numel(spec.shape);
    f.parameters += n;
    if (spec.name.rfind("layers.0.", 0) == 0) f.layer_weight_bytes += n * wsize;
    else if (spec.name.rfind("layers.", 0) != 0) f.other_weight_bytes += n * wsize;
  }
  f.total_weight_bytes = f.layer_weight_bytes * config.num_layers + f.other_weight_bytes;
  f.kv_bytes_per_token = 2ull * config.num_layers * config.kv_dim() * dtype_size(kv_dtype);
  return f;
}

}  // namespace strata::planner
