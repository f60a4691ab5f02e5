// The AVX-512 kernel of host_kv_attention() for int4-g64 KV with head_dim 128: scores and
// weighted sums computed in the quantised domain with 8-bit integer dot products. This file has the
// task, the query's per-head key form and the output; the unit key form and the value pass are in
// host_kv_avx512_int4_gqa.cc, the notes on the arithmetic in host_kv_avx512_int4_impl.h. Compiled,
// like host_kv_avx512.cc, with the AVX-512 flags only (see that file's header for why no AVX-512
// code can leak into the rest of the program); the one AVX512-VNNI instruction (vpdpbusd) is
// inline assembly, run only when HostKvCall::vnni says the CPU has it.

#include "compute/host_kv_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__) && \
    defined(__FMA__)

#include "compute/host_kv_avx512_int4_impl.h"

namespace strata::compute::detail {
namespace {

// The output's vpermt2ps indices: for part 0 (positions 0-15 of a group) and 1 (16-31), lane
// 4L + r takes position 2L + r (r < 2) or 8 + 2L + r - 2 of the part, from the value vectors
// v = 0 (indices 0-15) and 1 (16-31), whose lane 4a + t holds position 16 (a % 2) + 8 (a / 2) +
// 4v + t.
struct OutIdx {
  alignas(64) int32_t idx[2][16];
};
constexpr OutIdx make_out_idx() {
  OutIdx t{};
  for (int part = 0; part < 2; ++part) {
    for (int lane = 0; lane < 16; ++lane) {
      const int l = lane / 4, r = lane % 4;
      const int pos = 16 * part + (r < 2 ? 2 * l + r : 8 + 2 * l + r - 2);
      const int a = 2 * (pos % 16 / 8) + pos / 16, v = pos % 8 / 4;
      t.idx[part][lane] = 16 * v + 4 * a + pos % 4;
    }
  }
  return t;
}
constexpr OutIdx kOutIdx = make_out_idx();

template <class T>
T* carve(float*& at, int64_t floats) {
  auto addr = reinterpret_cast<uintptr_t>(at);
  at = reinterpret_cast<float*>((addr + 63) / 64 * 64);
  T* p = reinterpret_cast<T*>(at);
  at += floats;
  return p;
}

// The task itself; kU: 0 for the per-head key form, else the unit form's U.
template <bool kVnni, int kU>
void attend_task(const HostKvCall& c, const HostKvTask& t, float* scratch) {
  const int64_t hq = c.num_heads, group = hq / c.kv_heads;
  const int64_t h0 = t.kv_begin * group, h1 = t.kv_end * group, nh = h1 - h0;
  const int64_t batches = (nh + kLanes - 1) / kLanes, halves = 2 * batches, padded = 16 * batches;
  const int64_t row_groups = c.kv_heads * 2, row_bytes = c.kv_heads * 64;
  constexpr int64_t kSteps = kU > 0 ? 8 / kU : 0, kHeads = kU > 0 ? 8 / kU : 1;
  const int64_t units = nh / kHeads;
  Int4Task w;
  w.hs = round_up16(hq) + kLanes;
  w.halves = halves;
  float* at = scratch;
  w.acc = carve<float>(at, padded * kD128);
  w.s = carve<float>(at, kBlock * w.hs);
  w.m = carve<float>(at, w.hs);
  w.l = carve<float>(at, w.hs);
  w.alpha = carve<float>(at, w.hs);
  if constexpr (kU == 0) {
    w.qv = carve<int8_t>(at, padded * kHeadDigitBytes / 4);
    w.kinit = carve<int32_t>(at, padded * 2 * kLanes);
    w.ka = carve<float>(at, halves * kLanes);
    w.kb = carve<float>(at, halves * kLanes);
  } else {
    w.uq = carve<int8_t>(at, units * 3 * kSteps * 2 * 64 / 4);
    w.uinit = carve<int32_t>(at, units * 3 * kLanes);
    w.ua = carve<float>(at, units * kLanes);
    w.ub = carve<float>(at, units * kLanes);
  }
  w.gidx = carve<int32_t>(at, halves * kLanes);
  w.gbase = carve<int32_t>(at, halves);
  w.gmask = carve<uint32_t>(at, halves);
  w.wsc = carve<float>(at, halves * kLanes);
  w.macc = carve<float>(at, halves * kLanes);
  w.winit = carve<int32_t>(at, 4 * halves * kLanes);
  w.wf = carve<float>(at, kBlock * halves * kLanes);
  w.wq = carve<int32_t>(at, kQuads * 3 * halves * kLanes);
  w.fbuf = carve<int32_t>(at, kQuads * 2 * 4 * kLanes);
  w.x = carve<float>(at, kD128);
  const int64_t hs = w.hs;

  // The query: per head its digits, in the key form's layout; per half batch its groups.
  const uint16_t* qrow = c.q + t.row * hq * kD128;
  for (int64_t hb = 0; hb < halves; ++hb) {
    const int64_t first = h0 + hb * 8;
    const int64_t kv_first = (first < h1 ? first : h0) / group;
    w.gbase[hb] = static_cast<int32_t>(2 * kv_first);
    const int64_t loadable = min64(kLanes, row_groups - 2 * kv_first);
    w.gmask[hb] = (1u << loadable) - 1;
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t h = first + i;
      for (int64_t gi = 0; gi < 2; ++gi) {
        w.gidx[hb * kLanes + chunk_lane(i, gi)] =
            h < h1 ? static_cast<int32_t>(2 * (h / group - kv_first) + gi) : 0;
      }
    }
  }
  if constexpr (kU == 0) {
    for (int64_t n = 0; n < padded; ++n) {
      const int64_t h = h0 + n, hb = n / 8;
      int8_t* qv = w.qv + n * kHeadDigitBytes;
      int32_t* kinit = w.kinit + n * 2 * kLanes;
      if (h >= h1) {
        for (int64_t gi = 0; gi < 2; ++gi) {
          const int lane = static_cast<int>(hb * kLanes) + chunk_lane(n % 8, gi);
          w.ka[lane] = w.kb[lane] = 0.0f;
        }
        for (int64_t b = 0; b < kHeadDigitBytes; b += 64) {
          _mm512_storeu_si512(qv + b, _mm512_setzero_si512());
        }
        _mm512_storeu_si512(kinit, _mm512_setzero_si512());
        _mm512_storeu_si512(kinit + kLanes, _mm512_setzero_si512());
        continue;
      }
      HeadDigits hd;
      quantise_query_head<kVnni>(qrow + h * kD128, c.scale, hd);
      for (int64_t gi = 0; gi < 2; ++gi) {
        const int lane = static_cast<int>(hb * kLanes) + chunk_lane(n % 8, gi);
        w.ka[lane] = hd.ka[gi];
        w.kb[lane] = hd.kb[gi];
      }
      for (int64_t b = 0; b < kHeadDigitBytes; b += 64) {
        _mm512_storeu_si512(qv + b, _mm512_load_si512(hd.qv + b));
      }
      // The high sum starts at -8 x sum(Q2), the low one at -8 x sum(2^8 Q1 + Q0).
      const __m512i low = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(hd.sd[1]), 8),
                                           _mm512_load_si512(hd.sd[0]));
      _mm512_storeu_si512(kinit,
                          _mm512_mullo_epi32(_mm512_load_si512(hd.sd[2]), _mm512_set1_epi32(-8)));
      _mm512_storeu_si512(kinit + kLanes, _mm512_mullo_epi32(low, _mm512_set1_epi32(-8)));
    }
  } else {
    quantise_query_units<kVnni, kU>(c, t, w);
    // The unit form writes the scores of real heads only: the padding lanes stay 0.
    for (int64_t j = 0; j < kBlock; ++j) {
      for (int64_t h = h1; h < h0 + padded; ++h) w.s[j * hs + h] = 0.0f;
    }
  }
  for (int64_t n = 0; n < nh * kD128; n += kLanes) _mm512_storeu_ps(w.acc + n, _mm512_setzero_ps());
  for (int64_t i = 0; i < halves * kLanes; i += kLanes) {
    _mm512_storeu_ps(w.macc + i, _mm512_setzero_ps());
  }
  for (int64_t b = 0; b < batches; ++b) {
    _mm512_storeu_ps(w.m + h0 + b * kLanes, _mm512_set1_ps(kNegInf));
    _mm512_storeu_ps(w.l + h0 + b * kLanes, _mm512_setzero_ps());
  }
  const int64_t base = t.slot * c.max_len;
  const int64_t pf = c.prefetch_rows;
  const __m512i lo4 = _mm512_set1_epi8(0x0f);

  for (int64_t b0 = t.begin; b0 < t.end; b0 += kBlock) {
    const int64_t nb = min64(kBlock, t.end - b0);
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t row = base + b0 + j;
      const uint8_t* codes = c.k.codes + row * row_bytes;
      // Prefetch: keys `pf` rows ahead into L1, and this row's values into L2 for the value
      // pass after the block, whose reads go down a column of rows.
      if (pf > 0) {
        const bool ahead = b0 + j + pf < t.end;
        const int64_t g0 = row * row_groups + 2 * t.kv_begin, gn = 2 * (t.kv_end - t.kv_begin);
        for (int64_t g = 0; g < gn; g += 32) {
          if (ahead) {
            _mm_prefetch(reinterpret_cast<const char*>(c.k.scales + g0 + pf * row_groups + g),
                         _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(c.k.mins + g0 + pf * row_groups + g),
                         _MM_HINT_T0);
          }
          _mm_prefetch(reinterpret_cast<const char*>(c.v.scales + g0 + g), _MM_HINT_T1);
          _mm_prefetch(reinterpret_cast<const char*>(c.v.mins + g0 + g), _MM_HINT_T1);
        }
      }
      // Each kv head's codes are prefetched as it is scored (prefetch_codes).
      const int64_t ahead = pf > 0 && b0 + j + pf < t.end ? pf : 0;
      if constexpr (kU > 0) {
        // Rows in pairs: the second of a pair is scored with the first.
        if (j % 2 == 1) continue;
        if (j + 1 < nb) {
          const int64_t rows[2] = {row, row + 1}, js[2] = {j, j + 1};
          const int64_t aheads[2] = {ahead, pf > 0 && b0 + j + 1 + pf < t.end ? pf : 0};
          score_rows_units<kVnni, kU, 2>(c, t, w, rows, js, pf > 0, aheads);
        } else {
          score_rows_units<kVnni, kU, 1>(c, t, w, &row, &j, pf > 0, &ahead);
        }
      } else {
        // Per-head form: each kv head's codes split into nibbles once for its query heads.
        __m512 dots[kLanes];
        int64_t n = 0, batch = 0;
        auto flush = [&] {
          for (int64_t i = n; i < kLanes; ++i) dots[i] = _mm512_setzero_ps();
          __m512 g0, g1;
          reduce_groups(dots, g0, g1);  // (head, group) sums: heads 0-7 in g0, 8-15 in g1
          __m512 f[2];
          const __m512 gs[2] = {g0, g1};
          for (int64_t half = 0; half < 2; ++half) {
            const int64_t hb = 2 * batch + half;
            const __m512 sc = group_values(c.k.scales, row_groups, row, w, hb);
            const __m512 mid = _mm512_fmadd_ps(sc, _mm512_set1_ps(8.0f),
                                               group_values(c.k.mins, row_groups, row, w, hb));
            f[half] =
                _mm512_fmadd_ps(gs[half], _mm512_mul_ps(sc, _mm512_loadu_ps(w.ka + hb * kLanes)),
                                _mm512_mul_ps(mid, _mm512_loadu_ps(w.kb + hb * kLanes)));
          }
          _mm512_storeu_ps(w.s + j * hs + h0 + batch * kLanes,
                           _mm512_add_ps(_mm512_shuffle_f32x4(f[0], f[1], 0x88),
                                         _mm512_shuffle_f32x4(f[0], f[1], 0xdd)));
          ++batch;
          n = 0;
        };
        for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
          if (pf > 0) prefetch_codes(c, row, kvh, ahead);
          const __m512i x = _mm512_loadu_si512(codes + kvh * 64);
          const __m512i lo = _mm512_and_si512(x, lo4);
          const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), lo4);
          for (int64_t r = 0; r < group; ++r) {
            const int64_t qn = kvh * group + r - h0;
            const int8_t* qv = w.qv + qn * kHeadDigitBytes;
            // (2^8 (2^8 (Q2 . c - 8 sum Q2) + Q1 . c) + Q0 . c - 8 sum(2^8 Q1 + Q0) = Q . (c - 8):
            // at most 2^23 x 8 x 8 in magnitude, exact in int32.
            __m512i a = _mm512_loadu_si512(w.kinit + qn * 2 * kLanes);
            a = dot_bytes_at<kVnni, true>(a, lo, qv + 256);
            a = dot_bytes_at<kVnni, true>(a, hi, qv + 320);
            a = _mm512_slli_epi32(a, 8);
            a = dot_bytes_at<kVnni, true>(a, lo, qv + 128);
            a = dot_bytes_at<kVnni, true>(a, hi, qv + 192);
            __m512i b = _mm512_loadu_si512(w.kinit + (qn * 2 + 1) * kLanes);
            b = dot_bytes_at<kVnni, true>(b, lo, qv);
            b = dot_bytes_at<kVnni, true>(b, hi, qv + 64);
            dots[n++] = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(a, 8), b));
            if (n == kLanes) flush();
          }
        }
        if (n > 0) flush();
      }
    }
    softmax_block(w.s, hs, nb, h0, batches, w.m, w.l, w.alpha);
    accumulate_block_values<kVnni>(c, t, w, b0, nb);
  }

  // Out: (acc + min terms) in natural order, / l as fp16, or into the partial. Vector
  // (g, v, kind) lane 4a + t holds element 64g + 2 (16 (a % 2) + 8 (a / 2) + 4v + t) + kind:
  // per group and kind the two v vectors are permuted into two orders of positions that
  // vunpck[lh]ps of the kinds put in natural order.
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t n = h - h0, hb = n / 8;
    const float* a = w.acc + n * kD128;
    for (int64_t g = 0; g < 2; ++g) {
      const __m512 mg = _mm512_set1_ps(w.macc[hb * kLanes + chunk_lane(n % 8, g)]);
      for (int64_t part = 0; part < 2; ++part) {
        const __m512i idx = _mm512_load_si512(kOutIdx.idx[part]);
        __m512 p[2];
        for (int64_t kind = 0; kind < 2; ++kind) {
          p[kind] = _mm512_permutex2var_ps(_mm512_loadu_ps(a + ((g * 2) * 2 + kind) * kLanes), idx,
                                           _mm512_loadu_ps(a + ((g * 2 + 1) * 2 + kind) * kLanes));
        }
        float* x = w.x + 64 * g + 32 * part;
        _mm512_storeu_ps(x, _mm512_add_ps(_mm512_unpacklo_ps(p[0], p[1]), mg));
        _mm512_storeu_ps(x + kLanes, _mm512_add_ps(_mm512_unpackhi_ps(p[0], p[1]), mg));
      }
    }
    if (t.partial == nullptr) {
      const __m512 inv = _mm512_set1_ps(1.0f / w.l[h]);
      uint16_t* o = c.out + t.row * hq * kD128 + h * kD128;
      for (int64_t i = 0; i < kD128; i += kLanes) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i),
                            _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(w.x + i), inv),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    } else {
      float* pm = t.partial;
      float* pl = pm + hq;
      float* pa = pl + hq + h * kD128;
      pm[h] = w.m[h];
      pl[h] = w.l[h];
      for (int64_t i = 0; i < kD128; i += kLanes)
        _mm512_storeu_ps(pa + i, _mm512_loadu_ps(w.x + i));
    }
  }
}

}  // namespace

template <bool kVnni>
void attend_int4_d128(const HostKvCall& c, const HostKvTask& t, float* scratch) {
  // The unit form where a kv head's query heads fill whole units of 8 / U heads.
  const int64_t group = c.num_heads / c.kv_heads;
  if (group % 8 == 0) return attend_task<kVnni, 1>(c, t, scratch);
  if (group == 4) return attend_task<kVnni, 2>(c, t, scratch);
  if (group == 2) return attend_task<kVnni, 4>(c, t, scratch);
  return attend_task<kVnni, 0>(c, t, scratch);
}

template void attend_int4_d128<true>(const HostKvCall&, const HostKvTask&, float*);
template void attend_int4_d128<false>(const HostKvCall&, const HostKvTask&, float*);

}  // namespace strata::compute::detail

#endif
