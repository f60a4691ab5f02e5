#include "cuda/profile.h"

namespace strata::cuda {

Result<GpuLinkAndRates> measure_gpu_profile(int, uint64_t) {
  return unsupported("strata was built without CUDA (no nvcc found, or STRATA_CUDA=OFF): no GPU figures");
}

}  // namespace strata::cuda
