// The roofline measurements in a build without CUDA: they say so.
#include "cuda/roofline.h"

namespace strata::cuda {

Result<double> measure_copy_bandwidth(int, uint64_t, int) {
  return unsupported("strata was built without CUDA");
}
Result<double> measure_gemm_rate(int, DType, int64_t, int64_t, int64_t, int) {
  return unsupported("strata was built without CUDA");
}

}  // namespace strata::cuda
