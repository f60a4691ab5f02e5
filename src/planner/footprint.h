// ModelFootprint: how many bytes a model's weights and KV cache take, per layer and in total,
// for a given storage dtype. The planner's memory accounting starts here. Pure functions.
#pragma once

#include <cstdint>

#include "common/dtype.h"
#include "model/config.h"

namespace strata::planner {

struct ModelFootprint {
  int64_t parameters = 0;             // all distinct weights (a tied head counted once)
  uint64_t layer_weight_bytes = 0;    // one transformer layer (the largest, where layers differ)
  uint64_t other_weight_bytes = 0;    // embeddings, positions, projections, final norm, head
  uint64_t total_weight_bytes = 0;
  uint64_t kv_bytes_per_token = 0;    // keys + values of all layers for one token
};

ModelFootprint model_footprint(const model::ModelConfig& config, DType weight_dtype, DType kv_dtype);

}  // namespace strata::planner
