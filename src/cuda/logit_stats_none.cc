// cuda/logit_stats.h in a build without CUDA.
#include "cuda/logit_stats.h"

namespace strata::cuda {

Result<std::vector<LogitStats>> logit_stats(compute::Backend&, const Tensor&,
                                            std::span<const LogitQuery>) {
  return unsupported("logit statistics on the GPU: this build has no CUDA");
}

}  // namespace strata::cuda
