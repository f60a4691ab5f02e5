#include "cuda/device_weights.h"

#include <cmath>
#include <string>
#include <string_view>

#include "cuda/cuda_backend.h"
#include "model/weight_names.h"

namespace strata::cuda {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Result<Tensor> make_device_synthetic_weight(const model::WeightSpec& spec,
                                           compute::Backend& backend, uint64_t stream) {
  if (!is_cuda_backend(backend))
    return invalid_argument("device synthetic weights need the cuda backend, not " + backend.name());
  const std::string_view n = spec.name;
  const bool table = n == "embed.tokens" || n == "embed.positions";
  const bool vector = spec.shape.size() == 1;
  float center = 0.0f, half = 0.0f;
  if (ends_with(n, "norm.weight")) {
    center = 1.0f;
    half = 0.1f;
  } else if (ends_with(n, ".bias")) {
    half = 0.02f;
  } else if (table) {
    half = 0.1f;
  } else {
    half = 1.0f / std::sqrt(static_cast<float>(spec.shape.back()));
  }
  const DType dtype = vector ? DType::kF32 : backend.activation_dtype();
  STRATA_ASSIGN_OR_RETURN(Tensor t, backend.allocate_uninitialized(dtype, spec.shape));
  STRATA_RETURN_IF_ERROR(fill_uniform(backend, t, stream, center, half));
  return t;
}

Result<compute::ModelWeights> make_device_synthetic_weights(const model::ModelConfig& config,
                                                            compute::Backend& backend,
                                                            uint64_t seed) {
  compute::ModelWeights weights;
  uint64_t stream = seed * 0x9e3779b97f4a7c15ull + 1;
  for (const auto& spec : model::model_weights(config)) {
    STRATA_ASSIGN_OR_RETURN(Tensor t, make_device_synthetic_weight(spec, backend, stream++));
    if (spec.name == "embed.tokens" && config.tie_word_embeddings) weights.put("lm_head.weight", t);
    weights.put(spec.name, std::move(t));
  }
  synchronize(backend);
  return weights;
}

}  // namespace strata::cuda
