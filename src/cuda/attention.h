// Attention kernels of the CUDA backend over a ragged batch with grouped-query heads and a KV
// cache [slots, max_len, kv_heads, head_dim] in device memory:
//   - launch_kv_write copies this step's k/v rows into the cache;
//   - launch_attention_prefill: tensor-core tiles of 64 query rows x 64 keys with an online
//     softmax, so no [s, s] score matrix exists anywhere (head_dim a multiple of 16, <= 256);
//   - launch_attention_decode: one block per (query row, kv head, split of the context) that
//     reads each key and value once for all query heads of the group, on the tensor cores where
//     the shapes allow; the last split of a row to finish merges the splits.
// Row t of q/out belongs to seqs[token_seq[t]]; it attends to cache positions [lo, p] where p is
// its position and lo = max(0, p - window + 1) with a window (else 0). Internal to src/cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace strata::cuda {

// The device copy of compute::SeqSpan (same layout).
struct SeqDesc {
  int32_t slot;
  int32_t past_len;
  int32_t num_tokens;
  int32_t offset;
};

struct AttentionArgs {
  DType dtype = DType::kF16;
  const void* q = nullptr;        // [T, hq, head_dim]
  void* out = nullptr;            // [T, hq, head_dim]
  const void* k_cache = nullptr;  // [slots, max_len, hkv, head_dim]
  const void* v_cache = nullptr;
  const SeqDesc* seqs = nullptr;       // device
  const int32_t* token_seq = nullptr;  // device [T]: index into seqs of each row
  int64_t tokens = 0, hq = 0, hkv = 0, head_dim = 0, max_len = 0;
  float scale = 1.0f;
  int64_t window = 0;  // 0: full causal attention
  int sm_count = 1;     // the device's SMs (the decode kernels size their grids by it)
  // Decode with several splits: device [tokens * hkv] arrival counters, zero before the launch
  // and zero again after it (the last split of each row and kv head resets its own).
  unsigned* counters = nullptr;
};

// k, v [T, hkv, head_dim] -> cache rows (slot, past_len + i) of each row's sequence.
void launch_kv_write(DType dt, const void* k, const void* v, void* k_cache, void* v_cache,
                     const SeqDesc* seqs, const int32_t* token_seq, int64_t tokens, int64_t hkv,
                     int64_t head_dim, int64_t max_len, cudaStream_t stream);

// Query rows per prefill tile; tiles[i] = (sequence index, first row of the tile in the sequence).
inline constexpr int kPrefillTileRows = 64;
bool prefill_supported(int64_t head_dim);
void launch_attention_prefill(const AttentionArgs& a, const int32_t* tiles, int64_t num_tiles,
                              cudaStream_t stream);

// How many context splits the decode kernel should use (at most kDecodeMaxSplits), and the fp32
// workspace it then needs.
inline constexpr int kDecodeMaxSplits = 16;
int decode_splits(int64_t tokens, int64_t hkv, int64_t max_context, int sm_count);
int64_t decode_workspace_floats(int64_t tokens, int64_t hq, int64_t head_dim, int splits);
bool decode_supported(int64_t hq, int64_t hkv, int64_t head_dim);
void launch_attention_decode(const AttentionArgs& a, int splits, float* workspace,
                             cudaStream_t stream);
// The tensor-core decode kernel (attention_decode_mma.cu), which launch_attention_decode runs
// where it applies: head_dim 64 or 128, at most 8 query heads per kv head, mma.sync on the
// device. Same arguments, splits and workspace.
bool decode_mma_supported(int64_t hq, int64_t hkv, int64_t head_dim);
// Its splits of the context (it gains less from splitting than the CUDA-core kernel).
int decode_mma_splits(int64_t tokens, int64_t hkv, int64_t max_context, int sm_count);
void launch_attention_decode_mma(const AttentionArgs& a, int splits, float* workspace,
                                 cudaStream_t stream);

}  // namespace strata::cuda
