// HostKv: the KV cache of one (layer, GPU batch) kept in host memory for attention on the CPU,
// as fp16 or int4-g64, and the vectorised CPU attention over it (AVX-512 with F16C where the CPU
// has it, a portable path otherwise; chosen at run time). The memory is the caller's (a pinned
// arena); this file only defines its layout and the kernels. Kernels run on a ThreadPool and are
// thread safe for distinct caches. Units: elements and bytes.
//
// Layout, for `slots` sequences of up to `max_len` positions, E = kv_heads * head_dim:
//   fp16:     k and v each [slots, max_len, E] fp16 bit patterns.
//   int4-g64: k and v each the compute/int4.h blob of a [slots * max_len, E] matrix: codes
//             [slots*max_len, E/2] bytes, then scales [slots*max_len, E/64] fp16, then mins
//             [slots*max_len, E/64] fp16. Groups of 64 run along E, so each group is one head's
//             64 consecutive dims (head_dim a multiple of 64). This is byte for byte what
//             cuda::quantise_int4_on_device makes from a [rows, E] tensor of keys, so the GPU can
//             quantise prefill KV and copy the three parts into place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "compute/backend.h"

namespace strata {
class ThreadPool;
}

namespace strata::compute {

struct HostKvShape {
  int64_t slots = 0;
  int64_t max_len = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  bool int4 = false;

  int64_t row_elems() const { return kv_heads * head_dim; }  // E
  int64_t rows() const { return slots * max_len; }
  // Bytes of k (and of v): fp16 slots*max_len*E*2, int4 int4_blob_bytes(slots*max_len, E).
  size_t bytes_each() const;
  // Offsets inside an int4 blob of the codes, scales and mins of row r (= slot*max_len + pos).
  size_t code_offset(int64_t row) const { return static_cast<size_t>(row * row_elems() / 2); }
  size_t scale_offset(int64_t row) const;  // bytes from the blob start
  size_t min_offset(int64_t row) const;
};

// One (layer, GPU batch) cache: k and v point at bytes_each() bytes each.
struct HostKvView {
  HostKvShape shape;
  std::byte* k = nullptr;
  std::byte* v = nullptr;
};

// Writes `n` new positions of sequence `slot` starting at `pos` (rows slot * max_len + pos on, on
// into the next slots for a sequence longer than one): k_new, v_new are fp16
// [n, E] (row-major, bit patterns). int4 caches quantise each row by compute::quantise_int4's rule.
void host_kv_append(const HostKvView& cache, int64_t slot, int64_t pos, int64_t n,
                    const uint16_t* k_new, const uint16_t* v_new);

// Decode attention on the CPU for a ragged batch. For each sequence s of `seqs` (slot, past_len,
// num_tokens, offset as in backend.h): first its new keys and values (fp16 rows
// k_new/v_new[offset .. offset + num_tokens) of E elements) are appended at positions
// [past_len, past_len + num_tokens); then query row t (of Hq*head_dim fp16, grouped-query heads:
// query head h reads kv head h / (Hq / kv_heads)) attends causally to positions
// [0, past_len + i] (within params.sliding_window when set), and out row t gets the fp16 result.
// Scores and the softmax are fp32. q and out are [T, Hq*head_dim] fp16; k_new, v_new [T, E].
// Work is cut into (query row, position range) tasks over all heads, so each task streams whole
// contiguous cache rows; the pool's threads take tasks one at a time (ragged lengths balance) and
// rows split over several ranges are finished by merging softmax partials. Per-thread scratch is
// O(Hq * head_dim) floats. Out-of-range slots or positions abort (STRATA_CHECK): the engine
// builds `seqs`. Blocks the caller until done.
void host_kv_attention(ThreadPool& pool, const HostKvView& cache, int64_t num_heads,
                       const uint16_t* q, const uint16_t* k_new, const uint16_t* v_new,
                       std::span<const SeqSpan> seqs, const AttentionParams& params, uint16_t* out);

// Which kernel host_kv_attention() uses on this CPU: "avx512" or "portable".
const char* host_kv_kernel();

// How host_kv_attention() cuts its work, for tests and benchmarks; the defaults are what the
// engine uses. A task is one query row x a range of kv heads x a range of positions; tasks are
// taken by the pool's threads one at a time, and a row split over several position ranges is
// finished by merging their softmax partials.
struct HostKvTuning {
  bool force_portable = false;    // the portable kernel (and int4 quantiser) even with AVX-512
  int64_t chunk_positions = 0;    // positions per task; 0: sized so each thread gets ~4 tasks
  int64_t kv_heads_per_task = 0;  // 0: all kv heads, so a task reads whole contiguous rows
  int64_t prefetch_rows = -1;     // AVX-512 kernel: prefetch this many rows ahead; -1: default
  bool allow_vnni = true;         // AVX-512 int4 kernel: use AVX512-VNNI where the CPU has it
};
void host_kv_attention(ThreadPool& pool, const HostKvView& cache, int64_t num_heads,
                       const uint16_t* q, const uint16_t* k_new, const uint16_t* v_new,
                       std::span<const SeqSpan> seqs, const AttentionParams& params, uint16_t* out,
                       const HostKvTuning& tuning);

}  // namespace strata::compute
