// Synthetic weights made directly in a CUDA backend's memory (for benchmarks of full-size named
// shapes, where generating billions of values on the host and copying them would dominate):
// the same ranges as model::make_synthetic_source (linear weights U(-1/sqrt(in), 1/sqrt(in)),
// norm scales near 1, small biases and tables), drawn by a seeded GPU generator. The values are
// not those of the host synthetic source. No CUDA header here.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "compute/backend.h"
#include "compute/transformer.h"
#include "model/config.h"
#include "model/weight_names.h"

namespace strata::cuda {

// One weight of that set: `stream` picks its values (make_device_synthetic_weights uses
// seed * 0x9e3779b97f4a7c15 + 1 + the weight's index in model::model_weights()).
Result<Tensor> make_device_synthetic_weight(const model::WeightSpec& spec,
                                           compute::Backend& backend, uint64_t stream);

Result<compute::ModelWeights> make_device_synthetic_weights(const model::ModelConfig& config,
                                                            compute::Backend& backend,
                                                            uint64_t seed);

}  // namespace strata::cuda
