// cuda/int4_kv.h's attention in a build without CUDA: there is no device to run it on.
#include "cuda/int4_kv.h"

namespace strata::cuda {

Status attention_int4_kv(compute::Backend& backend, const Tensor&, const Tensor&, const Tensor&,
                         Int4KvCache&, std::span<const compute::SeqSpan>,
                         const compute::AttentionParams&, Tensor&) {
  return invalid_argument("attention_int4_kv: strata was built without CUDA (backend " +
                          backend.name() + ")");
}

}  // namespace strata::cuda
