// make_cuda_backend() in a build without CUDA: it says so, and the rest of strata links the same.
#include "cuda/cuda_backend.h"

namespace strata::cuda {

Result<std::unique_ptr<compute::Backend>> make_cuda_backend(const CudaBackendOptions&) {
  return unsupported(
      "strata was built without CUDA (no nvcc found, or STRATA_CUDA=OFF); use --device cpu");
}

bool is_cuda_backend(const compute::Backend&) { return false; }

void synchronize(compute::Backend&) {}
void release_cached_memory(compute::Backend&) {}
void drop_cached_blocks(compute::Backend&) {}

Status fill_uniform(compute::Backend&, Tensor&, uint64_t, float, float) {
  return unsupported("fill_uniform: strata was built without CUDA");
}

Status hold_stream(compute::Backend&, double) {
  return unsupported("hold_stream: strata was built without CUDA");
}

void profiler_capture(compute::Backend&, bool) {}

}  // namespace strata::cuda
