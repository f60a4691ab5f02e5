// The kernels behind host_kv_attention() and host_kv_append() (compute/host_kv.h), internal to
// src/compute/ and its tests: one task attends one query row, over a range of kv heads and a
// range of cache positions, with an online softmax in fp32; a task covering the row's whole range
// writes the fp16 output, otherwise it writes a partial (max, sum, unnormalised accumulator) that
// the driver merges. Each kernel also quantises int4-g64 appends.
// This header holds plain data and declarations only, so that host_kv_avx512.cc (compiled for
// AVX-512) includes no inline code that the rest of the program could link to. Units: elements.
#pragma once

#include <cstdint>

namespace strata::compute::detail {

// Scores are computed and exponentiated in blocks of this many positions.
inline constexpr int64_t kHostKvBlock = 16;

// One of k or v of a cache. fp16: `f16` is [slots * max_len, E]. int4-g64: `codes` is
// [slots * max_len, E / 2] bytes, `scales` and `mins` [slots * max_len, E / 64] fp16.
struct HostKvPlane {
  const uint16_t* f16 = nullptr;
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
};

// What every task of one host_kv_attention() call shares; read-only while tasks run.
struct HostKvCall {
  int64_t max_len = 0;
  int64_t kv_heads = 0;   // Hkv
  int64_t head_dim = 0;   // d
  int64_t num_heads = 0;  // Hq, a multiple of Hkv
  bool int4 = false;
  HostKvPlane k, v;
  const uint16_t* q = nullptr;  // [T, Hq * d] fp16
  float scale = 1.0f;
  uint16_t* out = nullptr;    // [T, Hq * d] fp16
  int64_t prefetch_rows = 0;  // software prefetch of the row this many positions ahead (0: none)
  bool vnni = false;  // AVX-512 kernel: the CPU has AVX512-VNNI (vpdpbusd) for int4 dot products
};

// One query row against positions [begin, end) of its slot, for kv heads [kv_begin, kv_end)
// (query heads kv_begin * G .. kv_end * G, G = Hq / Hkv).
struct HostKvTask {
  int64_t row = 0;  // row of q and out
  int64_t slot = 0;
  int64_t begin = 0, end = 0;
  int64_t kv_begin = 0, kv_end = 0;
  // nullptr: [begin, end) is the row's whole range; the task writes its heads of out[row].
  // Otherwise the task writes its heads of a partial laid out as m [Hq], l [Hq], acc [Hq, d]:
  // the running max of the scaled scores, the sum of exp(score - m), and the sum of
  // exp(score - m) * v in natural dimension order.
  float* partial = nullptr;
};

// Floats of a partial for Hq heads of head_dim d.
inline constexpr int64_t host_kv_partial_floats(int64_t num_heads, int64_t head_dim) {
  return num_heads * (head_dim + 2);
}

// Floats of per-thread scratch a kernel needs for one task (reused from task to task): the
// fp32 path's, plus what the AVX-512 int4 path for head_dim 128 lays out (per padded head: the
// accumulator, the query digits, 64 positions' scores, weights and weight digits; a block's
// regrouped value codes; 64-byte alignment slop).
inline constexpr int64_t host_kv_scratch_floats(int64_t num_heads, int64_t head_dim) {
  return 2 * num_heads * head_dim + (num_heads + 32) * (kHostKvBlock + 3) +
         (kHostKvBlock + 2) * head_dim + 64 + 500 * (num_heads + 32) + 4096;
}

struct HostKvKernel {
  const char* name;
  // Runs one task; `scratch` holds host_kv_scratch_floats() floats.
  void (*attend)(const HostKvCall& call, const HostKvTask& task, float* scratch);
  // dst[i] = fp16(src[i]), round to nearest even.
  void (*to_f16)(const float* src, uint16_t* dst, int64_t n);
  // Whether the kernel handles this head_dim (the portable one handles all).
  bool (*supports)(int64_t head_dim);
  // The int4-g64 append: quantises `groups` consecutive groups of 64 fp16 values (bit patterns)
  // at x by compute::quantise_int4's rule, byte for byte, into 32 code bytes per group at
  // `codes` and one fp16 scale and min per group. Returns -1, or the index into x of the first
  // non-finite value (quantise_int4's error; the outputs are then unspecified).
  int64_t (*quantise_groups)(const uint16_t* x, int64_t groups, uint8_t* codes, uint16_t* scales,
                             uint16_t* mins);
};

// The scalar kernel; runs anywhere.
const HostKvKernel& host_kv_portable_kernel();
// The AVX-512 + F16C kernel, or nullptr when this build has none (not x86-64). Only call it
// through host_kv_select_kernel() or after checking that the CPU has AVX-512F/BW/VL, F16C, FMA.
const HostKvKernel* host_kv_avx512_kernel();
// The AVX-512 kernel when both the build and the CPU have it, else the portable one.
const HostKvKernel& host_kv_select_kernel();

}  // namespace strata::compute::detail
