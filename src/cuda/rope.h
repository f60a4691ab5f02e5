// Rotary position embedding on the GPU (rotate-half convention, as transformers' Llama): rotates
// x [tokens, heads, head_dim] in place; positions [tokens] (int32) and inv_freq [head_dim / 2]
// (fp32, see compute::make_rope_table) are device memory. Enqueued on `stream`. Internal.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "cuda/attention.h"

namespace strata::cuda {

void launch_rope(DType dt, void* x, const int32_t* positions, const float* inv_freq, int64_t tokens,
                 int64_t heads, int64_t head_dim, cudaStream_t stream);

// One launch for a layer's RoPE and KV cache write: launch_rope on q and on k, then
// launch_kv_write (attention.h) of the rotated k and of v, with bit-identical results. Row t's
// position must be its cache position (seqs[token_seq[t]].past_len + t - offset). attn describes
// the attention that follows; its q (rotated in place) and its caches are written.
struct RopeKvWrite {
  AttentionArgs attn;
  void* k = nullptr;                   // [tokens, hkv, head_dim], rotated in place
  const void* v = nullptr;             // [tokens, hkv, head_dim]
  const int32_t* positions = nullptr;  // device [tokens]
  const float* inv_freq = nullptr;     // device [head_dim / 2]
};
void launch_rope_kv_write(const RopeKvWrite& r, cudaStream_t stream);

}  // namespace strata::cuda
