// Host-resident KV cache: layout helpers, append (int4-g64 quantised straight into the cache,
// byte for byte as compute::quantise_int4, by the selected kernel), the portable attention kernel
// and quantiser, and the driver that cuts a call into tasks, runs them on the ThreadPool and
// merges split softmaxes.
//
// Work split: a task is one query row x all kv heads (by default) x a range of positions. One
// head's key of one position sits at a stride of E elements from the next position's, so a task
// per (sequence, kv head) would read head_dim * 2 bytes from every E * 2 bytes (one 256-byte
// piece per 4 KiB page for OPT-30B); a task over all heads streams whole contiguous rows.
// Position ranges are sized so every thread gets several tasks (threads take them one at a time,
// which balances ragged lengths); the thread that finishes the last range of a split row merges
// the partial softmaxes (max, sum, accumulator). A call wakes the pool once: appends, attention
// and merges all run inside one parallel_for.

#include "compute/host_kv.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "compute/dot.h"
#include "compute/host_kv_kernels.h"
#include "compute/int4.h"
#include "compute/op_checks.h"

namespace strata::compute {

// ---- Layout --------------------------------------------------------------------------------

size_t HostKvShape::bytes_each() const {
  const int64_t rows = slots * max_len;
  if (int4) return int4_blob_bytes(rows, row_elems());
  return static_cast<size_t>(rows * row_elems()) * sizeof(uint16_t);
}

size_t HostKvShape::scale_offset(int64_t row) const {
  const int64_t rows = slots * max_len, groups = row_elems() / kInt4GroupSize;
  return static_cast<size_t>(rows * row_elems() / 2 + row * groups * 2);
}

size_t HostKvShape::min_offset(int64_t row) const {
  const int64_t rows = slots * max_len, groups = row_elems() / kInt4GroupSize;
  return static_cast<size_t>(rows * row_elems() / 2 + rows * groups * 2 + row * groups * 2);
}

namespace {

// Rows ahead that the AVX-512 kernel prefetches in an fp16 cache: on the 16-core Sapphire Rapids
// test host, 4 took OPT-30B decode from 77 to 104 GB/s (8: 94, 16: 86). The int4 kernel for
// head_dim 128 works in the quantised domain and waits on memory without it; the fp32 int4
// kernel (other head dims) is bound by the dequantisation and loses a little to the extra
// instructions: none there.
constexpr int64_t kDefaultPrefetchRowsF16 = 4;
constexpr int64_t kDefaultPrefetchRowsInt4D128 = 4;

void check_shape(const HostKvShape& sh) {
  STRATA_CHECK(sh.slots > 0 && sh.max_len > 0 && sh.kv_heads > 0 && sh.head_dim > 0,
               "host KV: shape must be positive, got slots " + std::to_string(sh.slots) +
                   ", max_len " + std::to_string(sh.max_len) + ", kv_heads " +
                   std::to_string(sh.kv_heads) + ", head_dim " + std::to_string(sh.head_dim));
  STRATA_CHECK(!sh.int4 || sh.head_dim % kInt4GroupSize == 0,
               "host KV: an int4-g64 cache needs head_dim a multiple of 64, got " +
                   std::to_string(sh.head_dim));
}

// Quantises rows [row0, row0 + n) of one int4 blob from fp16 rows x [n, E] straight into their
// place, by the kernel's quantise_groups (byte for byte compute::quantise_int4; rows are
// consecutive in the blob, so the n rows are one run of groups).
void append_int4(const detail::HostKvKernel& kernel, const HostKvShape& sh, std::byte* blob,
                 int64_t row0, int64_t n, const uint16_t* x, const char* which, int64_t slot,
                 int64_t pos) {
  const int64_t e = sh.row_elems();
  const int64_t bad =
      kernel.quantise_groups(x, n * (e / kInt4GroupSize),
                             reinterpret_cast<uint8_t*>(blob + sh.code_offset(row0)),
                             reinterpret_cast<uint16_t*>(blob + sh.scale_offset(row0)),
                             reinterpret_cast<uint16_t*>(blob + sh.min_offset(row0)));
  STRATA_CHECK(bad < 0, std::string("host KV append of ") + which + ", slot " +
                            std::to_string(slot) + ", positions from " + std::to_string(pos) +
                            ": int4-g64: non-finite value " + std::to_string(f16_to_f32(x[bad])) +
                            " at row " + std::to_string(bad / e) + " (position " +
                            std::to_string(pos + bad / e) + "), column " +
                            std::to_string(bad % e) +
                            " (the layer's keys/values overflowed: check the model's dtype)");
}

// host_kv_append() with the given kernel's quantiser.
void append(const detail::HostKvKernel& kernel, const HostKvView& cache, int64_t slot, int64_t pos,
            int64_t n, const uint16_t* k_new, const uint16_t* v_new) {
  const HostKvShape& sh = cache.shape;
  STRATA_CHECK(slot >= 0 && slot < sh.slots && pos >= 0 && n >= 0 && slot * sh.max_len + pos + n <= sh.rows(),
               "host KV append: slot " + std::to_string(slot) + " positions [" +
                   std::to_string(pos) + ", " + std::to_string(pos + n) + ") run past " +
                   std::to_string(sh.slots) + " slots of " + std::to_string(sh.max_len));
  if (n == 0) return;
  const int64_t row0 = slot * sh.max_len + pos;
  if (sh.int4) {
    append_int4(kernel, sh, cache.k, row0, n, k_new, "keys", slot, pos);
    append_int4(kernel, sh, cache.v, row0, n, v_new, "values", slot, pos);
    return;
  }
  const size_t bytes = static_cast<size_t>(n * sh.row_elems()) * sizeof(uint16_t);
  const size_t at = static_cast<size_t>(row0 * sh.row_elems()) * sizeof(uint16_t);
  std::memcpy(cache.k + at, k_new, bytes);
  std::memcpy(cache.v + at, v_new, bytes);
}

}  // namespace

void host_kv_append(const HostKvView& cache, int64_t slot, int64_t pos, int64_t n,
                    const uint16_t* k_new, const uint16_t* v_new) {
  check_shape(cache.shape);
  append(detail::host_kv_select_kernel(), cache, slot, pos, n, k_new, v_new);
}

// ---- The portable kernel --------------------------------------------------------------------

namespace detail {
namespace {

// x[d] = head `kvh` of cache row `row` in fp32 (int4: float(q) * scale + min, as dequantise_int4).
void load_head(const HostKvCall& c, const HostKvPlane& p, int64_t row, int64_t kvh, float* x) {
  const int64_t d = c.head_dim, e = c.kv_heads * d;
  if (!c.int4) {
    const uint16_t* src = p.f16 + row * e + kvh * d;
    for (int64_t i = 0; i < d; ++i) x[i] = f16_to_f32(src[i]);
    return;
  }
  const int64_t groups = e / 64, g0 = kvh * (d / 64);
  const uint8_t* codes = p.codes + (row * e + kvh * d) / 2;
  for (int64_t g = 0; g < d / 64; ++g) {
    const float scale = f16_to_f32(p.scales[row * groups + g0 + g]);
    const float mn = f16_to_f32(p.mins[row * groups + g0 + g]);
    for (int64_t i = 0; i < 64; ++i) {
      const uint8_t byte = codes[(g * 64 + i) / 2];
      const int code = (i % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
      const float prod = static_cast<float>(code) * scale;
      x[g * 64 + i] = prod + mn;
    }
  }
}

void attend_portable(const HostKvCall& c, const HostKvTask& t, float* scratch) {
  const int64_t d = c.head_dim, hq = c.num_heads, group = hq / c.kv_heads;
  const int64_t h0 = t.kv_begin * group, h1 = t.kv_end * group;
  float* qf = scratch;       // [Hq, d]
  float* acc = qf + hq * d;  // [Hq, d]
  float* s = acc + hq * d;   // [Hq, kHostKvBlock] scores, then probabilities
  float* m = s + hq * kHostKvBlock;
  float* l = m + hq;
  float* x = l + hq;  // [d] one head of one key or value

  const uint16_t* qrow = c.q + t.row * hq * d;
  for (int64_t i = h0 * d; i < h1 * d; ++i) qf[i] = f16_to_f32(qrow[i]);
  std::fill(acc + h0 * d, acc + h1 * d, 0.0f);
  std::fill(m + h0, m + h1, -INFINITY);
  std::fill(l + h0, l + h1, 0.0f);

  for (int64_t b0 = t.begin; b0 < t.end; b0 += kHostKvBlock) {
    const int64_t nb = std::min(kHostKvBlock, t.end - b0);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t row = t.slot * c.max_len + b0 + j;
      for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
        load_head(c, c.k, row, kvh, x);
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          s[h * kHostKvBlock + j] = c.scale * dot(qf + h * d, x, d);
        }
      }
    }
    for (int64_t h = h0; h < h1; ++h) {
      float* sh = s + h * kHostKvBlock;
      float mx = m[h];
      for (int64_t j = 0; j < nb; ++j) mx = std::max(mx, sh[j]);
      const float alpha = m[h] == -INFINITY ? 0.0f : std::exp(m[h] - mx);
      float sum = 0.0f;
      for (int64_t j = 0; j < nb; ++j) {
        sh[j] = std::exp(sh[j] - mx);
        sum += sh[j];
      }
      l[h] = l[h] * alpha + sum;
      m[h] = mx;
      if (alpha != 1.0f) {
        for (int64_t i = 0; i < d; ++i) acc[h * d + i] *= alpha;
      }
    }
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t row = t.slot * c.max_len + b0 + j;
      for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
        load_head(c, c.v, row, kvh, x);
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const float p = s[h * kHostKvBlock + j];
          float* a = acc + h * d;
          for (int64_t i = 0; i < d; ++i) a[i] += p * x[i];
        }
      }
    }
  }

  if (t.partial == nullptr) {
    uint16_t* o = c.out + t.row * hq * d;
    for (int64_t h = h0; h < h1; ++h) {
      const float inv = 1.0f / l[h];
      for (int64_t i = 0; i < d; ++i) o[h * d + i] = f32_to_f16(acc[h * d + i] * inv);
    }
  } else {
    float* pm = t.partial;
    float* pl = pm + hq;
    float* pa = pl + hq;
    for (int64_t h = h0; h < h1; ++h) {
      pm[h] = m[h];
      pl[h] = l[h];
    }
    std::memcpy(pa + h0 * d, acc + h0 * d, static_cast<size_t>((h1 - h0) * d) * sizeof(float));
  }
}

void to_f16_portable(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

bool supports_any(int64_t) { return true; }

// ---- The int4-g64 append ----
//
// quantise_int4 per group: lo, hi = the first minimum and maximum (std::min/max keep the first
// of equal values), min = f16(lo), scale = f16((hi - lo) / 15), q = clamp(nearbyint((x - mn) /
// scale), 0, 15) with mn, scale the fp16 values, q = 0 when the scale is 0. Here the minimum and
// maximum are found on the fp16 bit patterns mapped to integers in value order, which ranks -0
// below +0 where the reference keeps whichever zero comes first: a group whose minimum is a zero
// takes the sign of its first zero. (hi - lo does not depend on the zeros' signs: it is +0 when
// all values are zeros, as the reference's x[0] - x[0].) The loops are branch free so that they
// vectorise.

// The fp16 bit pattern h as an int16 that orders like the values (-0 just below +0).
inline int32_t f16_order_key(uint16_t h) {
  return static_cast<int16_t>(h ^ (static_cast<uint16_t>(static_cast<int16_t>(h) >> 15) & 0x7fff));
}
// The inverse of f16_order_key (the map is its own inverse on 16 bits).
inline uint16_t f16_from_order_key(int32_t k) {
  const auto h = static_cast<uint16_t>(k);
  return static_cast<uint16_t>(h ^ (static_cast<uint16_t>(static_cast<int16_t>(h) >> 15) & 0x7fff));
}

// A finite fp16 bit pattern as fp32, exactly: normals by rebiasing the exponent (15 -> 127),
// subnormals m * 2^-24 as float(m) * 2^-24; both made, one kept by an integer mask, so that a
// loop of these has no branch and vectorises.
inline float f16_finite_to_f32(uint16_t h) {
  const uint32_t magnitude = h & 0x7fffu;
  const uint32_t normal = (magnitude << 13) + (112u << 23);
  const uint32_t subnormal = std::bit_cast<uint32_t>(static_cast<float>(magnitude) * 0x1p-24f);
  const uint32_t is_subnormal = (h & 0x7c00u) == 0 ? ~0u : 0u;
  const uint32_t bits = (subnormal & is_subnormal) | (normal & ~is_subnormal);
  return std::bit_cast<float>(bits | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

int64_t quantise_groups_portable(const uint16_t* x, int64_t groups, uint8_t* codes,
                                 uint16_t* scales, uint16_t* mins) {
  constexpr int kG = static_cast<int>(kInt4GroupSize);
  for (int64_t g = 0; g < groups; ++g, x += kG, codes += kG / 2) {
    int32_t kmin = INT16_MAX, kmax = INT16_MIN;
    uint32_t bad = 0;
    for (int i = 0; i < kG; ++i) {
      bad |= (x[i] & 0x7c00u) == 0x7c00u ? 1u : 0u;
      const int32_t k = f16_order_key(x[i]);
      kmin = std::min(kmin, k);
      kmax = std::max(kmax, k);
    }
    if (bad != 0) {
      for (int i = 0; i < kG; ++i) {
        if ((x[i] & 0x7c00u) == 0x7c00u) return g * kG + i;
      }
    }
    uint16_t lo_h = f16_from_order_key(kmin);
    if ((lo_h & 0x7fffu) == 0) {
      int i = 0;
      while ((x[i] & 0x7fffu) != 0) ++i;
      lo_h = x[i];
    }
    const float lo = f16_to_f32(lo_h), hi = f16_to_f32(f16_from_order_key(kmax));
    const uint16_t scale_h = f32_to_f16((hi - lo) / 15.0f);
    const float scale = f16_to_f32(scale_h);
    mins[g] = lo_h;
    scales[g] = scale_h;
    if (!(scale > 0.0f)) {
      std::memset(codes, 0, kG / 2);
      continue;
    }
    // t = (x - lo) / scale lies in [0, 23): t + 2^23 rounds it to an integer in the current
    // rounding mode, as nearbyint, and leaves that integer in the low mantissa bits.
    uint8_t q[kG];
    for (int i = 0; i < kG; ++i) {
      const float t = (f16_finite_to_f32(x[i]) - lo) / scale;
      const uint32_t r = std::bit_cast<uint32_t>(t + 0x1p23f) - 0x4b000000u;
      q[i] = static_cast<uint8_t>(std::min(r, 15u));
    }
    for (int j = 0; j < kG / 2; ++j) codes[j] = static_cast<uint8_t>(q[2 * j] | (q[2 * j + 1] << 4));
  }
  return -1;
}

}  // namespace

const HostKvKernel& host_kv_portable_kernel() {
  static const HostKvKernel kernel{"portable", attend_portable, to_f16_portable, supports_any,
                                   quantise_groups_portable};
  return kernel;
}

const HostKvKernel& host_kv_select_kernel() {
  const HostKvKernel* avx = host_kv_avx512_kernel();
#if defined(__x86_64__) || defined(_M_X64)
  if (avx != nullptr && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") &&
      __builtin_cpu_supports("fma")) {
    return *avx;
  }
#else
  (void)avx;
#endif
  return host_kv_portable_kernel();
}

}  // namespace detail

// ---- The driver ------------------------------------------------------------------------------

const char* host_kv_kernel() { return detail::host_kv_select_kernel().name; }

void host_kv_attention(ThreadPool& pool, const HostKvView& cache, int64_t num_heads,
                       const uint16_t* q, const uint16_t* k_new, const uint16_t* v_new,
                       std::span<const SeqSpan> seqs, const AttentionParams& params,
                       uint16_t* out) {
  host_kv_attention(pool, cache, num_heads, q, k_new, v_new, seqs, params, out, HostKvTuning{});
}

namespace {

// A query row whose range is cut into several position chunks: its partials, and how many of
// its tasks have finished (the thread that finishes the last one merges them).
struct SplitRow {
  int64_t row = 0;
  int64_t parts = 0;
  int64_t tasks = 0;          // parts x kv-head groups
  float* partials = nullptr;  // [parts, host_kv_partial_floats]
};

// out[row] = the softmax-weighted merge of the row's partials (see HostKvTask::partial).
void merge_partials(const SplitRow& sp, int64_t num_heads, int64_t d,
                    const detail::HostKvKernel& kernel, uint16_t* out, std::vector<float>& o,
                    std::vector<float>& w) {
  const int64_t stride = detail::host_kv_partial_floats(num_heads, d);
  o.resize(static_cast<size_t>(num_heads * d));
  w.resize(static_cast<size_t>(sp.parts));
  for (int64_t h = 0; h < num_heads; ++h) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < sp.parts; ++p) mx = std::max(mx, sp.partials[p * stride + h]);
    float total = 0.0f;
    for (int64_t p = 0; p < sp.parts; ++p) {
      const float* part = sp.partials + p * stride;
      w[static_cast<size_t>(p)] = std::exp(part[h] - mx);
      total += w[static_cast<size_t>(p)] * part[num_heads + h];
    }
    float* oh = o.data() + h * d;
    std::fill(oh, oh + d, 0.0f);
    for (int64_t p = 0; p < sp.parts; ++p) {
      const float wp = w[static_cast<size_t>(p)] / total;
      const float* acc = sp.partials + p * stride + 2 * num_heads + h * d;
      for (int64_t i = 0; i < d; ++i) oh[i] += wp * acc[i];
    }
  }
  kernel.to_f16(o.data(), out + sp.row * num_heads * d, num_heads * d);
}

}  // namespace

void host_kv_attention(ThreadPool& pool, const HostKvView& cache, int64_t num_heads,
                       const uint16_t* q, const uint16_t* k_new, const uint16_t* v_new,
                       std::span<const SeqSpan> seqs, const AttentionParams& params, uint16_t* out,
                       const HostKvTuning& tuning) {
  using detail::HostKvTask;
  const HostKvShape& sh = cache.shape;
  check_shape(sh);
  STRATA_CHECK(cache.k != nullptr && cache.v != nullptr, "host KV attention: cache not set");
  STRATA_CHECK(num_heads > 0 && num_heads % sh.kv_heads == 0,
               "host KV attention: " + std::to_string(num_heads) +
                   " query heads are not a multiple of " + std::to_string(sh.kv_heads) +
                   " kv heads");
  STRATA_CHECK(!params.sliding_window || *params.sliding_window > 0,
               "host KV attention: sliding window must be positive");
  int64_t t_count = 0;
  for (const SeqSpan& sp : seqs) {
    t_count = std::max<int64_t>(t_count, int64_t{sp.offset} + sp.num_tokens);
  }
  for (size_t s = 0; s < seqs.size(); ++s)
    check_seq_span(s, seqs[s], sh.slots, sh.max_len, t_count);
  check_seq_rows_apart(seqs, sh.max_len);

  const int64_t d = sh.head_dim, e = sh.row_elems(), hkv = sh.kv_heads;
  const detail::HostKvKernel* kernel = &detail::host_kv_select_kernel();
  if (tuning.force_portable) kernel = &detail::host_kv_portable_kernel();
  const detail::HostKvKernel* append_kernel = kernel;  // any kernel appends any head_dim
  if (!kernel->supports(d)) kernel = &detail::host_kv_portable_kernel();

  // Tasks: every query row's causal (windowed) range, cut into position chunks and kv-head
  // groups.
  const int64_t heads_per_task =
      tuning.kv_heads_per_task > 0 ? std::min(tuning.kv_heads_per_task, hkv) : hkv;
  const int64_t head_groups = (hkv + heads_per_task - 1) / heads_per_task;
  const int64_t window = params.sliding_window.value_or(0);
  struct RowRange {
    int64_t row, slot, lo, hi;  // positions [lo, hi)
  };
  std::vector<RowRange> rows;
  int64_t work = 0;  // positions x kv heads
  for (const SeqSpan& sp : seqs) {
    for (int64_t i = 0; i < sp.num_tokens; ++i) {
      const int64_t p = int64_t{sp.past_len} + i;
      const int64_t lo = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
      rows.push_back({int64_t{sp.offset} + i, sp.slot, lo, p + 1});
      work += (p + 1 - lo) * hkv;
    }
  }
  int64_t chunk = tuning.chunk_positions;
  if (chunk <= 0) {
    constexpr int64_t kTasksPerThread = 4, kMinChunk = 64;
    const int64_t target = std::max<int64_t>(1, int64_t{pool.size()} * kTasksPerThread);
    chunk = (work + target * heads_per_task - 1) / (target * heads_per_task);
    chunk = std::max(kMinChunk, (chunk + detail::kHostKvBlock - 1) / detail::kHostKvBlock *
                                    detail::kHostKvBlock);
  }
  const int64_t partial_floats = detail::host_kv_partial_floats(num_heads, d);
  std::vector<SplitRow> splits;
  size_t partial_total = 0;
  for (const RowRange& r : rows) {
    const int64_t parts = (r.hi - r.lo + chunk - 1) / chunk;
    if (parts > 1) {
      splits.push_back({r.row, parts, parts * head_groups, nullptr});
      partial_total += static_cast<size_t>(parts * partial_floats);
    }
  }
  // Not value-initialised: every float of a partial is written by its task before it is read.
  std::unique_ptr<float[]> partials(partial_total > 0 ? new float[partial_total] : nullptr);
  std::vector<HostKvTask> tasks;
  std::vector<int32_t> task_split;  // index into `splits`, or -1
  size_t split_index = 0;
  for (float* at = partials.get(); const RowRange& r : rows) {
    const int64_t len = r.hi - r.lo;
    const int64_t parts = (len + chunk - 1) / chunk;
    const int32_t split = parts > 1 ? static_cast<int32_t>(split_index++) : -1;
    if (split >= 0) {
      splits[static_cast<size_t>(split)].partials = at;
      at += parts * partial_floats;
    }
    for (int64_t part = 0; part < parts; ++part) {
      for (int64_t g = 0; g < head_groups; ++g) {
        HostKvTask t;
        t.row = r.row;
        t.slot = r.slot;
        t.begin = r.lo + len * part / parts;
        t.end = r.lo + len * (part + 1) / parts;
        t.kv_begin = g * heads_per_task;
        t.kv_end = std::min(hkv, (g + 1) * heads_per_task);
        t.partial = split >= 0 ? splits[static_cast<size_t>(split)].partials + part * partial_floats
                               : nullptr;
        tasks.push_back(t);
        task_split.push_back(split);
      }
    }
  }

  detail::HostKvCall call;
  call.max_len = sh.max_len;
  call.kv_heads = hkv;
  call.head_dim = d;
  call.num_heads = num_heads;
  call.int4 = sh.int4;
  for (auto [plane, blob] : {std::pair{&call.k, cache.k}, std::pair{&call.v, cache.v}}) {
    if (sh.int4) {
      plane->codes = reinterpret_cast<const uint8_t*>(blob);
      plane->scales = reinterpret_cast<const uint16_t*>(blob + sh.scale_offset(0));
      plane->mins = reinterpret_cast<const uint16_t*>(blob + sh.min_offset(0));
    } else {
      plane->f16 = reinterpret_cast<const uint16_t*>(blob);
    }
  }
  call.q = q;
  call.scale = params.scale;
  call.out = out;
#if defined(__x86_64__) || defined(_M_X64)
  call.vnni = tuning.allow_vnni && __builtin_cpu_supports("avx512vnni");
#endif
  call.prefetch_rows = tuning.prefetch_rows >= 0 ? tuning.prefetch_rows
                       : !sh.int4                ? kDefaultPrefetchRowsF16
                       : d == 128                ? kDefaultPrefetchRowsInt4D128
                                                 : 0;

  // One pass over the pool (each wake-up of the pool costs): every thread first takes appends
  // until none is left and waits until all are written (they are short), then takes tasks one
  // at a time; the thread that finishes a split row's last task merges its partials.
  const int64_t appends = static_cast<int64_t>(seqs.size());
  std::atomic<int64_t> next_append{0}, appended{0};
  std::atomic<size_t> next_task{0};
  std::unique_ptr<std::atomic<int64_t>[]> finished(new std::atomic<int64_t>[splits.size()]);
  for (size_t i = 0; i < splits.size(); ++i) finished[i].store(0, std::memory_order_relaxed);
  const int64_t workers = std::min<int64_t>(
      pool.size(), std::max<int64_t>(appends, static_cast<int64_t>(tasks.size())));
  pool.parallel_for(workers, [&](int64_t, int64_t) {
    for (int64_t s = next_append.fetch_add(1, std::memory_order_relaxed); s < appends;
         s = next_append.fetch_add(1, std::memory_order_relaxed)) {
      const SeqSpan& sp = seqs[static_cast<size_t>(s)];
      append(*append_kernel, cache, sp.slot, sp.past_len, sp.num_tokens,
             k_new + int64_t{sp.offset} * e, v_new + int64_t{sp.offset} * e);
      appended.fetch_add(1, std::memory_order_release);
    }
    while (appended.load(std::memory_order_acquire) < appends) std::this_thread::yield();

    std::vector<float> scratch(static_cast<size_t>(detail::host_kv_scratch_floats(num_heads, d)));
    std::vector<float> merged, weights;
    for (size_t i = next_task.fetch_add(1, std::memory_order_relaxed); i < tasks.size();
         i = next_task.fetch_add(1, std::memory_order_relaxed)) {
      kernel->attend(call, tasks[i], scratch.data());
      const int32_t split = task_split[i];
      if (split < 0) continue;
      const SplitRow& sp = splits[static_cast<size_t>(split)];
      // acq_rel: the last finisher sees every other task's partial.
      if (finished[split].fetch_add(1, std::memory_order_acq_rel) + 1 == sp.tasks) {
        merge_partials(sp, num_heads, d, *kernel, out, merged, weights);
      }
    }
  });
}

}  // namespace strata::compute
