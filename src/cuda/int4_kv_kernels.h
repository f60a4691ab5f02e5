// Kernels of the int4-g64 KV cache (cuda/int4_kv.h), over blobs in the layout of
// compute/host_kv.h (codes [rows, E/2], then fp16 scales [rows, E/64], then fp16 mins):
//   - launch_int4_kv_append: quantises each new k/v row into cache row slot * max_len + position,
//     one thread per group of 64, compute::quantise_int4's arithmetic step for step;
//   - launch_int4_kv_decode: the fp16 decode kernel's scheme (one block per query row, kv head and
//     context split; subgroups of lanes, 8 dims per lane, online softmax in registers, GQA rows
//     read once per group) with each lane dequantising its 8 codes of a key or value in
//     registers; several splits are merged by a second kernel.
// Device pointers; enqueued on `stream`. Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"
#include "cuda/attention.h"

namespace strata::cuda {

// k, v [tokens, E] in dtype dt (F16 or BF16); row t goes to position past_len + t - offset of
// seqs[token_seq[t]]. cache_rows = slots * max_len rows in each blob.
void launch_int4_kv_append(DType dt, const void* k, const void* v, void* k_blob, void* v_blob,
                           const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens,
                           int64_t row_elems, int64_t max_len, int64_t cache_rows,
                           cudaStream_t stream);

struct Int4KvDecodeArgs {
  DType dtype = DType::kF16;
  const void* q = nullptr;  // [tokens, hq, head_dim]
  void* out = nullptr;      // [tokens, hq, head_dim]
  const void* k_blob = nullptr;
  const void* v_blob = nullptr;
  const SeqDesc* seqs = nullptr;       // device
  const int32_t* token_seq = nullptr;  // device [tokens]
  const int32_t* rows = nullptr;       // device [num_rows]: the query rows to compute
  int64_t num_rows = 0;
  int64_t hq = 0, hkv = 0, head_dim = 0, max_len = 0, cache_rows = 0;
  float scale = 1.0f;
  int64_t window = 0;  // 0: full causal attention
};

bool int4_kv_decode_supported(int64_t hq, int64_t hkv, int64_t head_dim);
// workspace: decode_workspace_floats(tokens, hq, head_dim, splits) floats when splits > 1.
void launch_int4_kv_decode(const Int4KvDecodeArgs& a, int splits, float* workspace,
                           cudaStream_t stream);

}  // namespace strata::cuda
