// The AVX-512 kernel of host_kv_attention(): fp16 -> fp32 with vcvtph2ps, scores of 16 heads
// reduced at once, and an online softmax in fp32 vectorised across heads over blocks of 16
// positions. The query heads of one kv head share each loaded key and value. int4-g64 with
// head_dim 128 computes in the quantised domain with 8-bit integer dot products (see
// attend_int4_d128); other int4 head dims are dequantised in registers by a 16-entry table lookup
// (vpermps). The int4-g64 append quantises 64 values per step (quantise_groups_avx512).
//
// This file, host_kv_avx512_int4.cc and host_kv_avx512_int4_gqa.cc alone are compiled with
// -mavx512f -mavx512bw -mavx512vl -mf16c -mfma -ffp-contract=off. They share only
// host_kv_avx512_common.h (the int4 files also host_kv_avx512_int4_impl.h), whose functions are
// internal to each of them, include no other header with inline code (see host_kv_kernels.h) and
// call only intrinsics and their own functions (the int4 files also each other's), so no AVX-512
// code can be linked into the rest of the program; the driver calls them only on a CPU with these
// extensions (host_kv_select_kernel()). The int4 kernel's one AVX512-VNNI instruction (vpdpbusd) is
// inline assembly, run only when HostKvCall::vnni says the CPU has it.
//
// int4 heads are kept in "quad order": within each group of 64, element 4i + k of the group sits
// at 16k + i, which is the order the lookups produce (dword i of the group's codes, read as 16-bit
// words widened to 32 bits, holds elements 4i .. 4i + 3 in its four low nibbles). The query and
// the accumulator use that order too; outputs are put back in natural order.

#include "compute/host_kv_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__) && \
    defined(__FMA__)

#include "compute/host_kv_avx512_common.h"

namespace strata::compute::detail {
namespace {

void attend_avx512(const HostKvCall& c, const HostKvTask& t, float* scratch) {
  if (c.int4 && c.head_dim == kD128) {
    return c.vnni ? attend_int4_d128<true>(c, t, scratch) : attend_int4_d128<false>(c, t, scratch);
  }
  const int64_t d = c.head_dim, hq = c.num_heads, group = hq / c.kv_heads;
  const int64_t h0 = t.kv_begin * group, h1 = t.kv_end * group;
  const int64_t hs = round_up16(hq) + kLanes;  // row stride of the scores; vectors may overhang
  float* qf = scratch;                         // [Hq, d] kernel order
  float* acc = qf + hq * d;                    // [Hq, d] kernel order
  float* s = acc + hq * d;           // [16, hs] scores, then probabilities, position-major
  float* m = s + kHostKvBlock * hs;  // [hs] running max
  float* l = m + hs;                 // [hs] running sum
  float* alpha = l + hs;             // [hs] this block's rescale factors
  float* x = alpha + hs;             // [d] one head of one row
  float* vblock = x + d;             // [16, d] one head of a block of value rows
  const int64_t batches = (h1 - h0 + kLanes - 1) / kLanes;

  // The query heads in fp32, in kernel order; accumulators cleared.
  const uint16_t* qrow = c.q + t.row * hq * d;
  for (int64_t h = h0; h < h1; ++h) {
    float* dst = c.int4 ? x : qf + h * d;
    for (int64_t i = 0; i < d; i += kLanes) {
      const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qrow + h * d + i));
      _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(half));
      _mm512_storeu_ps(acc + h * d + i, _mm512_setzero_ps());
    }
    if (c.int4) reorder_quad(x, qf + h * d, d, true);
  }
  for (int64_t b = 0; b < batches; ++b) {
    _mm512_storeu_ps(m + h0 + b * kLanes, _mm512_set1_ps(kNegInf));
    _mm512_storeu_ps(l + h0 + b * kLanes, _mm512_setzero_ps());
  }
  const __m512 scale = _mm512_set1_ps(c.scale);
  const int64_t base = t.slot * c.max_len;  // cache row of position 0
  const int64_t pf = c.prefetch_rows;

  for (int64_t b0 = t.begin; b0 < t.end; b0 += kHostKvBlock) {
    const int64_t nb = min64(kHostKvBlock, t.end - b0);
    // Scores: each key row is read once for all the query heads that use it; the dots of 16
    // heads (or of 16 / G positions x G heads) are reduced together.
    const bool grouped = group == 2 || group == 4 || group == 8;
    for (int64_t kvh = t.kv_begin; grouped && kvh < t.kv_end; ++kvh) {
      for (int64_t j = 0; j < nb; ++j) {
        if (pf > 0 && b0 + j + pf < t.end) prefetch_head(c, c.k, base + b0 + j + pf, kvh);
        load_head(c, c.k, base + b0 + j, kvh, vblock + j * d);
      }
      const float* qh = qf + kvh * group * d;
      float* sh = s + kvh * group;
      if (group == 2) score_block<2>(vblock, nb, d, qh, c.scale, sh, hs);
      if (group == 4) score_block<4>(vblock, nb, d, qh, c.scale, sh, hs);
      if (group == 8) score_block<8>(vblock, nb, d, qh, c.scale, sh, hs);
    }
    for (int64_t j = 0; !grouped && j < nb; ++j) {
      const int64_t row = base + b0 + j;
      float* sj = s + j * hs + h0;
      __m512 dots[kLanes];
      int64_t n = 0, stored = 0;
      auto flush = [&] {
        for (int64_t i = n; i < kLanes; ++i) dots[i] = _mm512_setzero_ps();
        _mm512_storeu_ps(sj + stored, _mm512_mul_ps(reduce16(dots), scale));
        stored += kLanes;
        n = 0;
      };
      for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
        if (pf > 0 && b0 + j + pf < t.end) prefetch_head(c, c.k, row + pf, kvh);
        if (group == 1) {
          const float* qh = qf + kvh * d;
          __m512 a = _mm512_setzero_ps();
          for_each_chunk(c, c.k, row, kvh, [&](int64_t i, __m512 v) {
            a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + i), v, a);
          });
          dots[n++] = a;
          if (n == kLanes) flush();
          continue;
        }
        load_head(c, c.k, row, kvh, x);
        for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
          const float* qh = qf + h * d;
          __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
          int64_t i = 0;
          for (; i + 32 <= d; i += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + i), _mm512_loadu_ps(x + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + i + 16), _mm512_loadu_ps(x + i + 16), a1);
          }
          if (i < d) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qh + i), _mm512_loadu_ps(x + i), a0);
          dots[n++] = _mm512_add_ps(a0, a1);
          if (n == kLanes) flush();
        }
      }
      if (n > 0) flush();
    }
    softmax_block(s, hs, nb, h0, batches, m, l, alpha);
    for (int64_t h = h0; h < h1; ++h) {
      if (alpha[h] == 1.0f) continue;
      const __m512 a = _mm512_set1_ps(alpha[h]);
      float* ah = acc + h * d;
      for (int64_t i = 0; i < d; i += kLanes) {
        _mm512_storeu_ps(ah + i, _mm512_mul_ps(_mm512_loadu_ps(ah + i), a));
      }
    }
    // acc += p * v, each value row read once.
    if (group == 1) {
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t row = base + b0 + j;
        const float* pj = s + j * hs;
        for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
          if (pf > 0 && b0 + j + pf < t.end) prefetch_head(c, c.v, row + pf, kvh);
          const __m512 p = _mm512_set1_ps(pj[kvh]);
          float* ah = acc + kvh * d;
          for_each_chunk(c, c.v, row, kvh, [&](int64_t i, __m512 v) {
            _mm512_storeu_ps(ah + i, _mm512_fmadd_ps(p, v, _mm512_loadu_ps(ah + i)));
          });
        }
      }
    } else {
      // Per kv head: its block of value rows in fp32, then up to 8 query heads at a time with
      // their accumulators in registers.
      for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
        for (int64_t j = 0; j < nb; ++j) {
          if (pf > 0 && b0 + j + pf < t.end) prefetch_head(c, c.v, base + b0 + j + pf, kvh);
          load_head(c, c.v, base + b0 + j, kvh, vblock + j * d);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h += 8) {
          accumulate_values_n(min64(8, (kvh + 1) * group - h), vblock, nb, d, s + h, hs,
                              acc + h * d);
        }
      }
    }
  }

  // Out: acc / l in natural order, as fp16 or into the partial.
  for (int64_t h = h0; h < h1; ++h) {
    const float* src = acc + h * d;
    if (c.int4) {
      reorder_quad(src, x, d, false);
      src = x;
    }
    if (t.partial == nullptr) {
      const __m512 inv = _mm512_set1_ps(1.0f / l[h]);
      uint16_t* o = c.out + t.row * hq * d + h * d;
      for (int64_t i = 0; i < d; i += kLanes) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i),
                            _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(src + i), inv),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    } else {
      float* pm = t.partial;
      float* pl = pm + hq;
      float* pa = pl + hq + h * d;
      pm[h] = m[h];
      pl[h] = l[h];
      for (int64_t i = 0; i < d; i += kLanes) _mm512_storeu_ps(pa + i, _mm512_loadu_ps(src + i));
    }
  }
}

void to_f16_avx512(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(dst + i),
        _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask, src + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(dst + i, mask, h);
  }
}

bool supports_multiple_of_16(int64_t head_dim) { return head_dim % kLanes == 0; }

// The int4-g64 append, byte for byte quantise_int4 (see quantise_groups_portable in host_kv.cc
// for the rule): per group of 64, the values in fp32 (vcvtph2ps, exact), their minimum and
// maximum, q = (x - mn) / scale by a true division, rounded by vcvtps2dq in the current rounding
// mode (as nearbyint) and clamped, then packed two per byte. vminps picks either zero of -0 and
// +0, the reference the first one: a group whose minimum is a zero takes its first zero's bits.
int64_t quantise_groups_avx512(const uint16_t* x, int64_t groups, uint8_t* codes,
                               uint16_t* scales, uint16_t* mins) {
  const __m512i magnitude = _mm512_set1_epi16(0x7fff), inf = _mm512_set1_epi16(0x7c00);
  // After the two packs, dword 4l + k holds elements 16k + 4l .. 16k + 4l + 3: back to order.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i zero = _mm512_setzero_si512(), fifteen = _mm512_set1_epi32(15);
  for (int64_t g = 0; g < groups; ++g, x += 64, codes += 32) {
    const __m512i h0 = _mm512_loadu_si512(x), h1 = _mm512_loadu_si512(x + 32);
    const __m512i a0 = _mm512_and_si512(h0, magnitude), a1 = _mm512_and_si512(h1, magnitude);
    const uint32_t bad0 = _mm512_cmpge_epu16_mask(a0, inf), bad1 = _mm512_cmpge_epu16_mask(a1, inf);
    if ((bad0 | bad1) != 0) {
      return g * 64 + (bad0 != 0 ? __builtin_ctz(bad0) : 32 + __builtin_ctz(bad1));
    }
    const __m512 v[4] = {_mm512_cvtph_ps(_mm512_castsi512_si256(h0)),
                         _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h0, 1)),
                         _mm512_cvtph_ps(_mm512_castsi512_si256(h1)),
                         _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h1, 1))};
    const float lo = _mm512_reduce_min_ps(
        _mm512_min_ps(_mm512_min_ps(v[0], v[1]), _mm512_min_ps(v[2], v[3])));
    const float hi = _mm512_reduce_max_ps(
        _mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3])));
    uint16_t lo_h = _cvtss_sh(lo, _MM_FROUND_TO_NEAREST_INT);  // exact: lo is an fp16 value
    if (lo == 0.0f) {
      const uint32_t z0 = _mm512_cmpeq_epu16_mask(a0, zero), z1 = _mm512_cmpeq_epu16_mask(a1, zero);
      lo_h = x[z0 != 0 ? __builtin_ctz(z0) : 32 + __builtin_ctz(z1)];
    }
    const uint16_t scale_h = _cvtss_sh((hi - lo) / 15.0f, _MM_FROUND_TO_NEAREST_INT);
    const float scale = _cvtsh_ss(scale_h);
    mins[g] = lo_h;
    scales[g] = scale_h;
    if (!(scale > 0.0f)) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes), _mm256_setzero_si256());
      continue;
    }
    const __m512 mn = _mm512_set1_ps(lo), sv = _mm512_set1_ps(scale);
    __m512i q[4];
    for (int k = 0; k < 4; ++k) {
      const __m512i r = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_sub_ps(v[k], mn), sv));
      q[k] = _mm512_min_epi32(_mm512_max_epi32(r, zero), fifteen);
    }
    // Codes 0..15 as bytes in element order, then byte 2j | byte 2j + 1 << 4 of each word.
    const __m512i b = _mm512_permutexvar_epi32(
        order, _mm512_packs_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3])));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes),
                        _mm512_cvtepi16_epi8(_mm512_or_si512(b, _mm512_srli_epi16(b, 4))));
  }
  return -1;
}

const HostKvKernel kAvx512Kernel{"avx512", attend_avx512, to_f16_avx512, supports_multiple_of_16,
                                 quantise_groups_avx512};

}  // namespace

const HostKvKernel* host_kv_avx512_kernel() { return &kAvx512Kernel; }

}  // namespace strata::compute::detail

#else  // not built for AVX-512

namespace strata::compute::detail {
const HostKvKernel* host_kv_avx512_kernel() { return nullptr; }
}  // namespace strata::compute::detail

#endif
