// Shared pieces of the AVX-512 host-KV attention kernels (host_kv_avx512.cc: fp16 and generic
// int4; host_kv_avx512_int4.cc and host_kv_avx512_int4_gqa.cc: int4-g64 with head_dim 128 in the
// quantised domain): the vectorised exp, the chunk walk over a task's positions, head loads and the
// blocked online softmax. Included only by files compiled with the AVX-512 flags (see
// src/compute/CMakeLists.txt), inside their feature guard; every function is internal to the
// including file.
#pragma once

#include <immintrin.h>

#include "compute/host_kv_kernels.h"

namespace strata::compute::detail {
namespace {

constexpr float kNegInf = -__builtin_inff();
constexpr int64_t kLanes = 16;
constexpr int64_t kD128 = 128;  // the head_dim of the quantised-domain int4 kernel

// exp(x) for x <= 0 (and -inf -> 0): Cephes' expf polynomial on x - n ln 2, scaled by 2^n.
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up16(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Calls f(i, values) for the 16-element chunks of head `kvh` of cache row `row`, in fp32, in
// kernel order (natural for fp16, quad order for int4, whose values are float(q) * scale + min:
// a rounded product then a rounded sum, as dequantise_int4).
template <class F>
inline void for_each_chunk(const HostKvCall& c, const HostKvPlane& p, int64_t row, int64_t kvh,
                           F&& f) {
  const int64_t d = c.head_dim, e = c.kv_heads * d;
  if (!c.int4) {
    const uint16_t* src = p.f16 + row * e + kvh * d;
    for (int64_t i = 0; i < d; i += kLanes) {
      f(i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
    }
    return;
  }
  const int64_t groups = e / 64, g0 = row * groups + kvh * (d / 64);
  const uint8_t* codes = p.codes + (row * e + kvh * d) / 2;
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t g = 0; g < d / 64; ++g) {
    const __m512 scale = _mm512_set1_ps(_cvtsh_ss(p.scales[g0 + g]));
    const __m512 mn = _mm512_set1_ps(_cvtsh_ss(p.mins[g0 + g]));
    const __m512 table = _mm512_add_ps(_mm512_mul_ps(iota, scale), mn);
    const __m512i w =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + g * 32)));
    // vpermps reads only the low 4 bits of each index.
    f(g * 64, _mm512_permutexvar_ps(w, table));
    f(g * 64 + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(w, 4), table));
    f(g * 64 + 32, _mm512_permutexvar_ps(_mm512_srli_epi32(w, 8), table));
    f(g * 64 + 48, _mm512_permutexvar_ps(_mm512_srli_epi32(w, 12), table));
  }
}

// Prefetches head `kvh` of cache row `row` (its codes, scales and mins for int4) into L1.
inline void prefetch_head(const HostKvCall& c, const HostKvPlane& p, int64_t row, int64_t kvh) {
  const int64_t d = c.head_dim, e = c.kv_heads * d;
  if (!c.int4) {
    const char* a = reinterpret_cast<const char*>(p.f16 + row * e + kvh * d);
    for (int64_t off = 0; off < d * 2; off += 64) _mm_prefetch(a + off, _MM_HINT_T0);
    return;
  }
  const char* a = reinterpret_cast<const char*>(p.codes + (row * e + kvh * d) / 2);
  for (int64_t off = 0; off < d / 2; off += 64) _mm_prefetch(a + off, _MM_HINT_T0);
  const int64_t g0 = row * (e / 64) + kvh * (d / 64);
  _mm_prefetch(reinterpret_cast<const char*>(p.scales + g0), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p.mins + g0), _MM_HINT_T0);
}

// x[d] = one head of one row, in kernel order.
inline void load_head(const HostKvCall& c, const HostKvPlane& p, int64_t row, int64_t kvh,
                      float* x) {
  for_each_chunk(c, p, row, kvh, [x](int64_t i, __m512 v) { _mm512_storeu_ps(x + i, v); });
}

// The horizontal sums of 16 vectors v[0..15] as two vectors: w0 holds those of v[0..7], w1 those
// of v[8..15], in lanes interleaved by 128-bit quarter (see reduce16 for the natural order).
inline void reduce_groups(const __m512* v, __m512& w0, __m512& w1) {
  __m512 t[8], u[4];
  for (int i = 0; i < 8; ++i) {
    // Per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3].
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    // Per 128-bit lane: the lane's sums of v[4i .. 4i + 3].
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xee));
  }
  w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
  w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
}

// The 16 horizontal sums of v[0..15], in order, in one vector.
inline __m512 reduce16(const __m512* v) {
  __m512 w0, w1;
  reduce_groups(v, w0, w1);
  return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xdd));
}

// dst[d] = src[d] moved between natural and quad order (to_quad: natural -> quad).
inline void reorder_quad(const float* src, float* dst, int64_t d, bool to_quad) {
  for (int64_t g = 0; g < d; g += 64) {
    for (int64_t k = 0; k < 4; ++k) {
      for (int64_t i = 0; i < 16; ++i) {
        if (to_quad) {
          dst[g + 16 * k + i] = src[g + 4 * i + k];
        } else {
          dst[g + 4 * i + k] = src[g + 16 * k + i];
        }
      }
    }
  }
}

// Scores s[j, g] = scale * q[g] . k[j] of G query heads (q [G, d]) against nb key rows
// (k [nb, d]), for G in {2, 4, 8}: the dots of 16 / G positions x G heads are reduced together,
// and each key chunk is loaded once for the G heads.
template <int G>
inline void score_block(const float* k, int64_t nb, int64_t d, const float* q, float scale,
                        float* s, int64_t s_stride) {
  constexpr int kPositions = kLanes / G;
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t j0 = 0; j0 < nb; j0 += kPositions) {
    __m512 dots[kLanes];
    for (int pi = 0; pi < kPositions; ++pi) {
      __m512 a[G];
      for (int g = 0; g < G; ++g) a[g] = _mm512_setzero_ps();
      if (j0 + pi < nb) {
        const float* kj = k + (j0 + pi) * d;
        for (int64_t i = 0; i < d; i += kLanes) {
          const __m512 kv = _mm512_loadu_ps(kj + i);
          for (int g = 0; g < G; ++g)
            a[g] = _mm512_fmadd_ps(_mm512_loadu_ps(q + g * d + i), kv, a[g]);
        }
      }
      for (int g = 0; g < G; ++g) dots[pi * G + g] = a[g];
    }
    alignas(64) float r[kLanes];
    _mm512_store_ps(r, _mm512_mul_ps(reduce16(dots), sv));
    for (int pi = 0; pi < kPositions && j0 + pi < nb; ++pi) {
      for (int g = 0; g < G; ++g) s[(j0 + pi) * s_stride + g] = r[pi * G + g];
    }
  }
}

// acc[g, d] += sum_j p[j, g] v[j, d] for GB query heads (at p + g, rows of p `p_stride` apart)
// and nb value rows v [nb, d]: the accumulators of 32 dimensions of all GB heads stay in
// registers while the rows go by.
template <int GB>
inline void accumulate_values(const float* v, int64_t nb, int64_t d, const float* p,
                              int64_t p_stride, float* acc) {
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m512 a0[GB], a1[GB];
    for (int g = 0; g < GB; ++g) {
      a0[g] = _mm512_loadu_ps(acc + g * d + i);
      a1[g] = _mm512_loadu_ps(acc + g * d + i + 16);
    }
    for (int64_t j = 0; j < nb; ++j) {
      const __m512 v0 = _mm512_loadu_ps(v + j * d + i), v1 = _mm512_loadu_ps(v + j * d + i + 16);
      for (int g = 0; g < GB; ++g) {
        const __m512 pb = _mm512_set1_ps(p[j * p_stride + g]);
        a0[g] = _mm512_fmadd_ps(pb, v0, a0[g]);
        a1[g] = _mm512_fmadd_ps(pb, v1, a1[g]);
      }
    }
    for (int g = 0; g < GB; ++g) {
      _mm512_storeu_ps(acc + g * d + i, a0[g]);
      _mm512_storeu_ps(acc + g * d + i + 16, a1[g]);
    }
  }
  if (i < d) {  // d = 32k + 16
    __m512 a0[GB];
    for (int g = 0; g < GB; ++g) a0[g] = _mm512_loadu_ps(acc + g * d + i);
    for (int64_t j = 0; j < nb; ++j) {
      const __m512 v0 = _mm512_loadu_ps(v + j * d + i);
      for (int g = 0; g < GB; ++g) {
        a0[g] = _mm512_fmadd_ps(_mm512_set1_ps(p[j * p_stride + g]), v0, a0[g]);
      }
    }
    for (int g = 0; g < GB; ++g) _mm512_storeu_ps(acc + g * d + i, a0[g]);
  }
}

inline void accumulate_values_n(int64_t gb, const float* v, int64_t nb, int64_t d, const float* p,
                         int64_t p_stride, float* acc) {
  switch (gb) {
    case 1:
      return accumulate_values<1>(v, nb, d, p, p_stride, acc);
    case 2:
      return accumulate_values<2>(v, nb, d, p, p_stride, acc);
    case 3:
      return accumulate_values<3>(v, nb, d, p, p_stride, acc);
    case 4:
      return accumulate_values<4>(v, nb, d, p, p_stride, acc);
    case 5:
      return accumulate_values<5>(v, nb, d, p, p_stride, acc);
    case 6:
      return accumulate_values<6>(v, nb, d, p, p_stride, acc);
    case 7:
      return accumulate_values<7>(v, nb, d, p, p_stride, acc);
    default:
      return accumulate_values<8>(v, nb, d, p, p_stride, acc);
  }
}

// Online softmax over one block of nb positions, 16 heads at a time from h0: s [nb, hs] scores
// become probabilities; m, l the running max and sum; alpha the factor that rescales what was
// accumulated before this block (0 on the first block).
inline void softmax_block(float* s, int64_t hs, int64_t nb, int64_t h0, int64_t batches, float* m,
                   float* l, float* alpha) {
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t hb = h0 + b * kLanes;
    const __m512 m_old = _mm512_loadu_ps(m + hb);
    __m512 m_new = m_old;
    for (int64_t j = 0; j < nb; ++j) m_new = _mm512_max_ps(m_new, _mm512_loadu_ps(s + j * hs + hb));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < nb; ++j) {
      const __m512 p = exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j * hs + hb), m_new));
      _mm512_storeu_ps(s + j * hs + hb, p);
      sum = _mm512_add_ps(sum, p);
    }
    const __m512 a = exp512(_mm512_sub_ps(m_old, m_new));  // 0 on the first block
    _mm512_storeu_ps(alpha + hb, a);
    _mm512_storeu_ps(l + hb, _mm512_fmadd_ps(_mm512_loadu_ps(l + hb), a, sum));
    _mm512_storeu_ps(m + hb, m_new);
  }
}

}  // namespace

// int4-g64 with head_dim 128 (host_kv_avx512_int4.cc); kVnni: the CPU has AVX512-VNNI.
template <bool kVnni>
void attend_int4_d128(const HostKvCall& c, const HostKvTask& t, float* scratch);

}  // namespace strata::compute::detail
