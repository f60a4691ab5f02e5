// cuda/int4_weights.h in a build without CUDA: there is no backend to hold int4 weights.
#include "cuda/int4_weights.h"

namespace strata::cuda {

Result<Tensor> upload_int4(compute::Backend&, const compute::Int4View&) {
  return unsupported("int4 weights on the GPU: this build has no CUDA; use --device cpu");
}

Result<Tensor> quantise_int4_on_device(compute::Backend&, const Tensor&) {
  return unsupported("int4 weights on the GPU: this build has no CUDA; use --device cpu");
}

Status quantise_int4_async(compute::Backend&, const Tensor&, Tensor&) {
  return unsupported("int4 weights on the GPU: this build has no CUDA; use --device cpu");
}

Result<std::vector<std::byte>> download_int4(compute::Backend&, const Tensor&) {
  return unsupported("int4 weights on the GPU: this build has no CUDA; use --device cpu");
}

}  // namespace strata::cuda
