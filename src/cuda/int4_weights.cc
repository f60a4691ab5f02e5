// The parts of cuda/int4_weights.h that need no CUDA: the tensor form and the model-wide
// conversion (which calls quantise_int4_on_device, a stub in a build without CUDA).
#include "cuda/int4_weights.h"

#include <string>

namespace strata::cuda {

Shape int4_weight_shape(int64_t rows, int64_t cols) {
  return {rows, cols / compute::kInt4GroupSize * 9};
}

bool is_int4_weight(const Tensor& w) {
  return w.defined() && w.memory() == MemoryKind::kGpu && w.dtype() == DType::kI32 &&
         w.rank() == 2 && w.dim(1) > 0 && w.dim(1) % 9 == 0;
}

int64_t int4_weight_cols(const Tensor& w) { return w.dim(1) / 9 * compute::kInt4GroupSize; }

bool int4_every_linear(const std::string& name, const Shape& shape) {
  if (name == "embed.tokens" || name == "embed.positions") return false;
  // A router is tiny, and its rounding would change which experts tokens go to.
  if (name.ends_with(".router.weight")) return false;
  return compute::int4_eligible(shape);
}

Status quantise_model_weights_int4(const model::ModelConfig& config, compute::Backend& backend,
                                   compute::ModelWeights& weights, const WeightFilter& which) {
  std::vector<std::string> names;
  for (const auto& spec : model::model_weights(config)) names.push_back(spec.name);
  if (config.tie_word_embeddings) names.push_back("lm_head.weight");
  for (const std::string& name : names) {
    const Tensor* t = weights.find(name);
    if (t == nullptr || is_int4_weight(*t) || !which(name, t->shape())) continue;
    Result<Tensor> q = quantise_int4_on_device(backend, *t);
    if (!q.is_ok()) return q.status().with_context("int4-g64 weight " + name);
    weights.put(name, std::move(q).value());  // the dense copy goes unless another name holds it
  }
  return Status::ok();
}

}  // namespace strata::cuda
