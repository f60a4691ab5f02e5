// An int4-g64 KV cache in GPU memory and decode attention over it. Each of k and v is one device
// blob in the layout of compute/host_kv.h (the compute/int4.h blob of a [slots * max_len, E]
// matrix, E = kv_heads * head_dim: codes, then fp16 scales, then fp16 mins; groups of 64 along
// E), held as an I32 tensor of int4_weight_shape(slots * max_len, E), so the same bytes move to
// and from a HostKv unchanged. The cache owns its two tensors; functions enqueue on the backend's
// stream and are not thread safe. No CUDA header here.
#pragma once

#include <cstdint>
#include <span>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"

namespace strata::cuda {

// One layer's int4 KV cache: the two blobs and the dimensions they cannot carry themselves
// (an I32 blob of [slots * max_len, ...] does not say where one slot ends).
struct Int4KvCache {
  Tensor k;  // I32 int4_kv_cache_shape(slots, max_len, kv_heads, head_dim)
  Tensor v;
  int64_t slots = 0;
  int64_t max_len = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;  // a multiple of 64

  int64_t row_elems() const { return kv_heads * head_dim; }  // E
  compute::LayerKvCache blobs() const { return {k, v}; }
};

// The I32 shape of one of k, v: int4_weight_shape(slots * max_len, kv_heads * head_dim).
Shape int4_kv_cache_shape(int64_t slots, int64_t max_len, int64_t kv_heads, int64_t head_dim);

// True when k and v are device I32 blobs of one int4 [rows, E] shape (the form above).
bool is_int4_kv_cache(const compute::LayerKvCache& cache);

// kOk when `cache`'s tensors are device blobs of exactly its dimensions; else kInvalidArgument
// naming what differs.
Status check_int4_kv_cache(const Int4KvCache& cache);

// A zeroed cache on `backend` (the cuda backend); kInvalidArgument for non-positive dimensions
// or head_dim not a multiple of 64.
Result<Int4KvCache> allocate_int4_kv_cache(compute::Backend& backend, int64_t slots,
                                           int64_t max_len, int64_t kv_heads, int64_t head_dim);

// Attention of a ragged batch over an int4 cache, as compute::host_kv_attention over the same
// bytes. q [T, Hq, head_dim], k_new, v_new [T, kv_heads, head_dim] and out [T, Hq, head_dim] are
// device tensors in the backend's activation dtype; seqs as for Backend::attention (slot,
// past_len, num_tokens, offset). For every sequence its new keys and values are quantised into
// the cache at positions [past_len, past_len + num_tokens) by compute::quantise_int4's rule
// (byte for byte host_kv_append's; a non-finite value is not reported and dequantises to
// non-finite values). Then:
//   - a prompt (past_len 0, num_tokens > 1) attends in fp16 to its own new keys and values by the
//     backend's fp16 attention, as the engine's prefill does;
//   - every other sequence's query rows attend causally to the dequantised cache, positions
//     [lo, past_len + i] including the row's own freshly quantised key (lo from
//     params.sliding_window), codes dequantised in registers, scores, softmax and the weighted
//     sum in fp32: compute::host_kv_attention's semantics.
// Grouped-query heads up to 8 query heads per kv head; head_dim 64, 128, 192 or 256.
// kInvalidArgument for another backend, mismatched shapes or dtypes; out-of-range sequence
// spans abort as in Backend::attention (the engine builds them).
Status attention_int4_kv(compute::Backend& backend, const Tensor& q, const Tensor& k_new,
                         const Tensor& v_new, Int4KvCache& cache,
                         std::span<const compute::SeqSpan> seqs,
                         const compute::AttentionParams& params, Tensor& out);

}  // namespace strata::cuda
