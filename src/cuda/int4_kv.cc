// The backend-independent part of cuda/int4_kv.h: the blob shape, the form checks and the
// allocation (built with and without CUDA).
#include "cuda/int4_kv.h"

#include <string>

#include "compute/int4.h"
#include "cuda/int4_weights.h"

namespace strata::cuda {

Shape int4_kv_cache_shape(int64_t slots, int64_t max_len, int64_t kv_heads, int64_t head_dim) {
  return int4_weight_shape(slots * max_len, kv_heads * head_dim);
}

bool is_int4_kv_cache(const compute::LayerKvCache& cache) {
  return is_int4_weight(cache.k) && is_int4_weight(cache.v) && cache.k.shape() == cache.v.shape();
}

Status check_int4_kv_cache(const Int4KvCache& cache) {
  if (cache.slots <= 0 || cache.max_len <= 0 || cache.kv_heads <= 0 || cache.head_dim <= 0 ||
      cache.head_dim % compute::kInt4GroupSize != 0) {
    return invalid_argument("int4 KV cache: slots " + std::to_string(cache.slots) + ", max_len " +
                            std::to_string(cache.max_len) + ", kv_heads " +
                            std::to_string(cache.kv_heads) + ", head_dim " +
                            std::to_string(cache.head_dim) +
                            ": all must be positive and head_dim a multiple of 64");
  }
  const Shape want =
      int4_kv_cache_shape(cache.slots, cache.max_len, cache.kv_heads, cache.head_dim);
  for (const auto& [t, name] : {std::pair{&cache.k, "k"}, std::pair{&cache.v, "v"}}) {
    if (!is_int4_weight(*t) || t->shape() != want) {
      return invalid_argument(std::string("int4 KV cache: ") + name +
                              " must be an I32 device tensor " + shape_string(want) + ", got " +
                              (t->defined() ? std::string(dtype_name(t->dtype())) + " " +
                                                  shape_string(t->shape())
                                            : std::string("none")) +
                              " (make it with allocate_int4_kv_cache)");
    }
  }
  return Status::ok();
}

Result<Int4KvCache> allocate_int4_kv_cache(compute::Backend& backend, int64_t slots,
                                           int64_t max_len, int64_t kv_heads, int64_t head_dim) {
  if (backend.memory_kind() != MemoryKind::kGpu)
    return invalid_argument("allocate_int4_kv_cache: needs the cuda backend, not " +
                            backend.name());
  Int4KvCache cache;
  cache.slots = slots;
  cache.max_len = max_len;
  cache.kv_heads = kv_heads;
  cache.head_dim = head_dim;
  if (slots <= 0 || max_len <= 0 || kv_heads <= 0 || head_dim <= 0 ||
      head_dim % compute::kInt4GroupSize != 0) {
    return check_int4_kv_cache(cache);  // names the bad dimension
  }
  const Shape shape = int4_kv_cache_shape(slots, max_len, kv_heads, head_dim);
  STRATA_ASSIGN_OR_RETURN(cache.k, backend.allocate(DType::kI32, shape));
  STRATA_ASSIGN_OR_RETURN(cache.v, backend.allocate(DType::kI32, shape));
  return cache;
}

}  // namespace strata::cuda
