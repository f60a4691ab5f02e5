// The AVX-512 kernel of host_kv_attention() for int4-g64 KV with head_dim 128: scores and
// weighted sums computed in the quantised domain with 16-bit integer dot products. Compiled, like
// host_kv_avx512.cc, with the AVX-512 flags only (see that file's header for why no AVX-512 code
// can leak into the rest of the program); the one AVX512-VNNI instruction (vpdpwssd) is inline
// assembly, run only when HostKvCall::vnni says the CPU has it.

#include "compute/host_kv_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__) && \
    defined(__FMA__)

#include "compute/host_kv_avx512_common.h"

namespace strata::compute::detail {
namespace {

// ---- int4-g64 with head_dim 128: arithmetic in the quantised domain ---------------------------
//
// A head of one row is 64 bytes of codes: two groups, each with a scale s and a min mn, so
//   q . k = sum_g s_g (q_g . c_g) + mn_g sum(q_g).
// The query is scaled per group of 64 by sq = max|q_g| / 32767 to integers (q ~ sq * qi), so
// q_g . c_g is an exact integer sum (vpmaddwd, or vpdpwssd with AVX512-VNNI) and sum(q_g) comes
// from the fp16 query itself.
// P . V likewise: sum_j p_j (s_jg c_j + mn_jg) = sum_j w_jg c_j + sum_j p_j mn_jg, w_jg = p_j s_jg.
// Per block of 16 positions w is scaled per (head, group) by ws = max_j w_jg / 32767; the codes of
// positions j and j + 1 are interleaved into the two halves of each dword so one vpmaddwd adds
// wi_j c_j + wi_j+1 c_j+1 exactly in int32, and the block's integer sum is scaled by ws into the
// fp32 accumulator.
// Precision: a single int16 per value (2^-16 of the group's largest) is not enough: outputs are
// often small differences of s c and mn terms ten times larger, and the tests' tolerance is the
// output's fp16 rounding. So q / sq and w / ws are each split into a high int16 and a low int16
// (x = hi + lo / 2^15: 31 bits, finer than fp32's 24) and both are dotted with the codes; and
// the codes are centred, s c + mn = s (c - 8) + (mn + 8 s), with the -8 applied exactly in the
// integer sums (they start at -8 x the sum of the q or w integers), so the fp32 terms stay about
// as large as the values themselves, as in the reference's dequantise-then-dot.
//
// Lane layouts. Key side: the 64 code bytes read as 32 words, nibble k of word w is element
// 4w + k; "nibble vector" k holds nibble k of every word, so its dword i covers elements 8i + k
// and 8i + 4 + k: dwords 0-7 belong to group 0, 8-15 to group 1, for every layout below. The
// query is stored as the same four vectors. After the dot products of 16 query heads, a three-
// level reduction leaves two vectors of (head, group) sums in "chunk order": lane 4c + i holds
// head i (c = 0, 1) or 4 + i (c = 2, 3) of the eight, group c % 2. Value side: the words of two
// rows interleaved (vpunpck[lh]wd), so dword 4L + t of the low / high half holds word 8L + t /
// 8L + 4 + t of both rows; its nibble k is element 32L + 4t + k / 32L + 16 + 4t + k.

// Chunk-order lane of head i (0..7) of a half batch, group gi.
constexpr int chunk_lane(int64_t i, int64_t gi) {
  return static_cast<int>((i / 4) * 8 + gi * 4 + i % 4);
}

// acc + sum of the products of the 16-bit halves of a and b.
template <bool kVnni>
inline __m512i dot_words(__m512i acc, __m512i a, __m512i b) {
  if constexpr (kVnni) {
    // vpdpwssd is AVX512-VNNI; written in assembly so the rest of this file needs no -mavx512vnni
    // (the caller checked the CPU).
    asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
  }
}

// The four nibble vectors of 32 words (see above).
inline void split_nibbles(__m512i x, __m512i* n) {
  const __m512i lo4 = _mm512_set1_epi16(0x000f);
  n[0] = _mm512_and_si512(x, lo4);
  n[1] = _mm512_and_si512(_mm512_srli_epi16(x, 4), lo4);
  n[2] = _mm512_and_si512(_mm512_srli_epi16(x, 8), lo4);
  n[3] = _mm512_srli_epi16(x, 12);
}

// The (head, group) sums of 16 dot vectors, in chunk order: heads 0-7 in w0, 8-15 in w1.
inline void reduce_groups(const __m512* v, __m512& w0, __m512& w1) {
  __m512 t[8], u[4];
  for (int i = 0; i < 8; ++i) {
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xee));
  }
  w0 =
      _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
  w1 =
      _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
}

// What one task of the int4-d128 kernel keeps, carved from the scratch.
struct Int4Task {
  int64_t hs = 0;            // row stride of the scores
  int64_t halves = 0;        // half batches of 8 query heads
  float* acc = nullptr;      // [16 * batches, 128] fp32, value-side lane order
  int16_t* qv = nullptr;     // [16 * batches, 2, 4, 32] the query (high, low parts), nibble order
  int32_t* kinit = nullptr;  // [16 * batches, 2, 16] -8 x the query's sums per dot lane
  float* s = nullptr;        // [16, hs]
  float *m = nullptr, *l = nullptr, *alpha = nullptr;
  // Per half batch, 16 lanes in chunk order:
  float* ka = nullptr;        // sq * softmax scale
  float* kb = nullptr;        // sum(q_g) * softmax scale
  int32_t* gidx = nullptr;    // group of the lane, counted from gbase
  int32_t* gbase = nullptr;   // [halves] first group (in the row) of the half batch
  uint32_t* gmask = nullptr;  // [halves] groups that may be loaded from gbase
  float* wsc = nullptr;       // this block's ws
  float* macc = nullptr;      // sum_j p_j (mn_jg + 8 s_jg), rescaled like acc
  int32_t* wsum = nullptr;    // [2, halves, 16] this block's sums of the weights' high, low parts
  float* wf = nullptr;        // [16, halves, 16] this block's w_jg
  int32_t* wpair = nullptr;   // [8, 2, halves, 16] wi_j | wi_j+1 << 16, high then low parts
  int32_t* nbuf = nullptr;    // [8, 8, 16] nibble vectors of one kv head's block of values
  float* x = nullptr;         // [256]
};

template <class T>
T* carve(float*& at, int64_t floats) {
  auto addr = reinterpret_cast<uintptr_t>(at);
  at = reinterpret_cast<float*>((addr + 63) / 64 * 64);
  T* p = reinterpret_cast<T*>(at);
  at += floats;
  return p;
}

// Scales (or mins) of the groups of half batch hb in row `row`, in chunk order.
inline __m512 group_values(const uint16_t* plane, int64_t row_groups, int64_t row,
                           const Int4Task& w, int64_t hb) {
  const __m256i h = _mm256_maskz_loadu_epi16(static_cast<__mmask16>(w.gmask[hb]),
                                             plane + row * row_groups + w.gbase[hb]);
  return _mm512_permutexvar_ps(_mm512_loadu_si512(w.gidx + hb * kLanes), _mm512_cvtph_ps(h));
}

}  // namespace

template <bool kVnni>
void attend_int4_d128(const HostKvCall& c, const HostKvTask& t, float* scratch) {
  const int64_t hq = c.num_heads, group = hq / c.kv_heads;
  const int64_t h0 = t.kv_begin * group, h1 = t.kv_end * group, nh = h1 - h0;
  const int64_t batches = (nh + kLanes - 1) / kLanes, halves = 2 * batches, padded = 16 * batches;
  const int64_t row_groups = c.kv_heads * 2, row_bytes = c.kv_heads * 64;
  Int4Task w;
  w.hs = round_up16(hq) + kLanes;
  w.halves = halves;
  float* at = scratch;
  w.acc = carve<float>(at, padded * kD128);
  w.qv = carve<int16_t>(at, padded * kD128);
  w.kinit = carve<int32_t>(at, padded * 2 * kLanes);
  w.s = carve<float>(at, kHostKvBlock * w.hs);
  w.m = carve<float>(at, w.hs);
  w.l = carve<float>(at, w.hs);
  w.alpha = carve<float>(at, w.hs);
  w.ka = carve<float>(at, halves * kLanes);
  w.kb = carve<float>(at, halves * kLanes);
  w.gidx = carve<int32_t>(at, halves * kLanes);
  w.gbase = carve<int32_t>(at, halves);
  w.gmask = carve<uint32_t>(at, halves);
  w.wsc = carve<float>(at, halves * kLanes);
  w.macc = carve<float>(at, halves * kLanes);
  w.wsum = carve<int32_t>(at, 2 * halves * kLanes);
  w.wf = carve<float>(at, kHostKvBlock * halves * kLanes);
  w.wpair = carve<int32_t>(at, kHostKvBlock * halves * kLanes);
  w.nbuf = carve<int32_t>(at, kHostKvBlock / 2 * 8 * kLanes);
  w.x = carve<float>(at, 2 * kD128);
  const int64_t hs = w.hs;

  // The query: int16 per group, nibble-vector order; per half batch its groups and coefficients.
  const uint16_t* qrow = c.q + t.row * hq * kD128;
  for (int64_t hb = 0; hb < halves; ++hb) {
    const int64_t first = h0 + hb * 8;
    const int64_t kv_first = (first < h1 ? first : h0) / group;
    w.gbase[hb] = static_cast<int32_t>(2 * kv_first);
    const int64_t loadable = min64(kLanes, row_groups - 2 * kv_first);
    w.gmask[hb] = (1u << loadable) - 1;
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t h = first + i, n = h - h0;
      int16_t* qv = w.qv + n * 2 * kD128;
      for (int64_t gi = 0; gi < 2; ++gi) {
        const int lane = static_cast<int>(hb * kLanes) + chunk_lane(i, gi);
        if (h >= h1) {
          w.ka[lane] = w.kb[lane] = 0.0f;
          w.gidx[lane] = 0;
          continue;
        }
        w.gidx[lane] = static_cast<int32_t>(2 * (h / group - kv_first) + gi);
        float* qf = w.x + gi * 64;
        __m512 mx = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
        for (int64_t e = 0; e < 64; e += kLanes) {
          const __m512 v = _mm512_cvtph_ps(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qrow + h * kD128 + gi * 64 + e)));
          _mm512_storeu_ps(qf + e, v);
          mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
          sum = _mm512_add_ps(sum, v);
        }
        const float maxabs = _mm512_reduce_max_ps(mx);
        const float inv = maxabs > 0.0f ? 32767.0f / maxabs : 0.0f;
        w.ka[lane] = maxabs / 32767.0f * c.scale;
        w.kb[lane] = _mm512_reduce_add_ps(sum) * c.scale;
        // q / sq = qh + ql / 2^15, qh in [-32767, 32767], ql in [-16384, 16384]: 31 bits.
        for (int64_t e = 0; e < 64; e += kLanes) {
          const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(qf + e), _mm512_set1_ps(inv));
          const __m512 r = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          _mm512_storeu_ps(qf + e, r);
          _mm512_storeu_ps(
              w.x + kD128 + gi * 64 + e,
              _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x, r), _mm512_set1_ps(32768.0f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
      }
      // Element 4w + k (w < 32) to word w of nibble vector k; dot lane i sums elements
      // 8i .. 8i + 7, and starts at -8 x their sum so that it sums q (c - 8).
      for (int64_t part = 0; part < 2; ++part) {
        for (int64_t k = 0; k < 4; ++k) {
          for (int64_t wd = 0; wd < 32; ++wd) {
            qv[part * kD128 + k * 32 + wd] =
                h < h1 ? static_cast<int16_t>(w.x[part * kD128 + 4 * wd + k]) : int16_t{0};
          }
        }
        for (int64_t i = 0; i < kLanes; ++i) {
          int32_t sum = 0;
          for (int64_t e = 8 * i; e < 8 * i + 8 && h < h1; ++e) {
            sum += static_cast<int32_t>(w.x[part * kD128 + e]);
          }
          w.kinit[(n * 2 + part) * kLanes + i] = -8 * sum;
        }
      }
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
  const __m512i pidx0 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);

  for (int64_t b0 = t.begin; b0 < t.end; b0 += kHostKvBlock) {
    const int64_t nb = min64(kHostKvBlock, t.end - b0);
    // Scores: per row, each kv head's codes unpacked once for its query heads.
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t row = base + b0 + j;
      const uint8_t* codes = c.k.codes + row * row_bytes;
      __m512 dots[kLanes];
      int64_t n = 0, batch = 0;
      auto flush = [&] {
        for (int64_t i = n; i < kLanes; ++i) dots[i] = _mm512_setzero_ps();
        __m512 g0, g1;
        reduce_groups(dots, g0, g1);
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
      // Prefetch: keys `pf` rows ahead into L1, and this row's values into L2 for the value
      // pass after the block, whose reads go down a column of rows.
      const bool ahead = pf > 0 && b0 + j + pf < t.end;
      if (pf > 0) {
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
      for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
        if (ahead) {
          _mm_prefetch(reinterpret_cast<const char*>(codes + pf * row_bytes + kvh * 64),
                       _MM_HINT_T0);
        }
        if (pf > 0) {
          _mm_prefetch(reinterpret_cast<const char*>(c.v.codes + row * row_bytes + kvh * 64),
                       _MM_HINT_T1);
        }
        __m512i nib[4];
        split_nibbles(_mm512_loadu_si512(codes + kvh * 64), nib);
        for (int64_t r = 0; r < group; ++r) {
          const int64_t qn = kvh * group + r - h0;
          const int16_t* qv = w.qv + qn * 2 * kD128;
          __m512i a = _mm512_loadu_si512(w.kinit + qn * 2 * kLanes);
          __m512i al = _mm512_loadu_si512(w.kinit + (qn * 2 + 1) * kLanes);
          for (int k = 0; k < 4; ++k) {
            a = dot_words<kVnni>(a, nib[k], _mm512_loadu_si512(qv + 32 * k));
            al = dot_words<kVnni>(al, nib[k], _mm512_loadu_si512(qv + kD128 + 32 * k));
          }
          // Both sums are below 2^23 in magnitude, so exact in fp32.
          dots[n++] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(al), _mm512_set1_ps(1.0f / 32768.0f),
                                      _mm512_cvtepi32_ps(a));
          if (n == kLanes) flush();
        }
      }
      if (n > 0) flush();
    }
    softmax_block(w.s, hs, nb, h0, batches, w.m, w.l, w.alpha);

    // Value weights w_jg = p_j s_jg per half batch, in chunk order; their block maximum; and
    // the min terms sum_j p_j mn_jg.
    for (int64_t hb = 0; hb < halves; ++hb) {
      const __m512i pidx = _mm512_add_epi32(pidx0, _mm512_set1_epi32(static_cast<int>(hb % 2) * 8));
      const int64_t hp = h0 + (hb / 2) * kLanes;
      __m512 wmax = _mm512_setzero_ps(), msum = _mm512_setzero_ps();
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t row = base + b0 + j;
        const __m512 p = _mm512_permutexvar_ps(pidx, _mm512_loadu_ps(w.s + j * hs + hp));
        const __m512 sc = group_values(c.v.scales, row_groups, row, w, hb);
        const __m512 wv = _mm512_mul_ps(p, sc);
        _mm512_storeu_ps(w.wf + (j * halves + hb) * kLanes, wv);
        wmax = _mm512_max_ps(wmax, wv);
        const __m512 mid = _mm512_fmadd_ps(sc, _mm512_set1_ps(8.0f),
                                           group_values(c.v.mins, row_groups, row, w, hb));
        msum = _mm512_fmadd_ps(p, mid, msum);
      }
      const __m512 alpha = _mm512_permutexvar_ps(pidx, _mm512_loadu_ps(w.alpha + hp));
      float* macc = w.macc + hb * kLanes;
      _mm512_storeu_ps(macc, _mm512_fmadd_ps(_mm512_loadu_ps(macc), alpha, msum));
      _mm512_storeu_ps(w.wsc + hb * kLanes, _mm512_mul_ps(wmax, _mm512_set1_ps(1.0f / 32767.0f)));
      const __mmask16 live = _mm512_cmp_ps_mask(wmax, _mm512_setzero_ps(), _CMP_GT_OQ);
      const __m512 winv = _mm512_maskz_div_ps(live, _mm512_set1_ps(32767.0f), wmax);
      // w / ws = wh + wl / 2^15 with wh in [0, 32767] and wl in [-16384, 16384]: 31 bits.
      auto split = [&](int64_t j, __m512i& wh, __m512i& wl) {
        if (j >= nb) {
          wh = wl = _mm512_setzero_si512();
          return;
        }
        const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(w.wf + (j * halves + hb) * kLanes), winv);
        const __m512 r = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        wh = _mm512_cvtps_epi32(r);
        wl = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(x, r), _mm512_set1_ps(32768.0f)));
      };
      const __m512i low16 = _mm512_set1_epi32(0xffff);
      __m512i sum_h = _mm512_setzero_si512(), sum_l = _mm512_setzero_si512();
      for (int64_t j = 0; j < nb; j += 2) {
        __m512i h0w, l0w, h1w, l1w;
        split(j, h0w, l0w);
        split(j + 1, h1w, l1w);
        sum_h = _mm512_add_epi32(sum_h, _mm512_add_epi32(h0w, h1w));
        sum_l = _mm512_add_epi32(sum_l, _mm512_add_epi32(l0w, l1w));
        int32_t* wp = w.wpair + ((j / 2) * 2 * halves + hb) * kLanes;
        _mm512_storeu_si512(wp, _mm512_or_si512(h0w, _mm512_slli_epi32(h1w, 16)));
        _mm512_storeu_si512(wp + halves * kLanes, _mm512_or_si512(_mm512_and_si512(l0w, low16),
                                                                  _mm512_slli_epi32(l1w, 16)));
      }
      _mm512_storeu_si512(w.wsum + hb * kLanes, sum_h);
      _mm512_storeu_si512(w.wsum + (halves + hb) * kLanes, sum_l);
    }
    // acc += ws * sum_j wi_j c_j: per kv head, its rows' codes interleaved in pairs and split
    // into nibble vectors once, then each of its query heads with 8 int32 accumulators.
    const int64_t pairs = (nb + 1) / 2;
    for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
      for (int64_t jp = 0; jp < pairs; ++jp) {
        const int64_t j = 2 * jp, j1 = j + 1 < nb ? j + 1 : j;  // an odd last row pairs itself
        const __m512i ra = _mm512_loadu_si512(c.v.codes + (base + b0 + j) * row_bytes + kvh * 64);
        const __m512i rb = _mm512_loadu_si512(c.v.codes + (base + b0 + j1) * row_bytes + kvh * 64);
        __m512i nib[8];
        split_nibbles(_mm512_unpacklo_epi16(ra, rb), nib);
        split_nibbles(_mm512_unpackhi_epi16(ra, rb), nib + 4);
        for (int v = 0; v < 8; ++v) _mm512_storeu_si512(w.nbuf + (jp * 8 + v) * kLanes, nib[v]);
      }
      for (int64_t r = 0; r < group; ++r) {
        const int64_t n = kvh * group + r - h0, hb = n / 8;
        const int lane0 = static_cast<int>(hb * kLanes) + chunk_lane(n % 8, 0), lane1 = lane0 + 4;
        // Started at -8 x the weights' sums, so that they sum w (c - 8).
        const int32_t* ws_h = w.wsum;
        const int32_t* ws_l = w.wsum + halves * kLanes;
        const __m512i init_h =
            _mm512_mask_set1_epi32(_mm512_set1_epi32(-8 * ws_h[lane0]), 0xff00, -8 * ws_h[lane1]);
        const __m512i init_l =
            _mm512_mask_set1_epi32(_mm512_set1_epi32(-8 * ws_l[lane0]), 0xff00, -8 * ws_l[lane1]);
        __m512i acc[8], acl[8];
        for (int v = 0; v < 8; ++v) {
          acc[v] = init_h;
          acl[v] = init_l;
        }
        for (int64_t jp = 0; jp < pairs; ++jp) {
          const int32_t* wp = w.wpair + jp * 2 * halves * kLanes;
          const int32_t* wl = wp + halves * kLanes;
          const __m512i wvh =
              _mm512_mask_set1_epi32(_mm512_set1_epi32(wp[lane0]), 0xff00, wp[lane1]);
          const __m512i wvl =
              _mm512_mask_set1_epi32(_mm512_set1_epi32(wl[lane0]), 0xff00, wl[lane1]);
          for (int v = 0; v < 8; ++v) {
            const __m512i nv = _mm512_loadu_si512(w.nbuf + (jp * 8 + v) * kLanes);
            acc[v] = dot_words<kVnni>(acc[v], nv, wvh);
            acl[v] = dot_words<kVnni>(acl[v], nv, wvl);
          }
        }
        const __m512 ws = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(w.wsc[lane0]),
                                               _mm512_set1_ps(w.wsc[lane1]));
        const __m512 wsl = _mm512_mul_ps(ws, _mm512_set1_ps(1.0f / 32768.0f));
        const __m512 alpha = _mm512_set1_ps(w.alpha[h0 + n]);
        float* a = w.acc + n * kD128;
        for (int v = 0; v < 8; ++v) {
          const __m512 sum = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[v]), ws,
                                             _mm512_mul_ps(_mm512_cvtepi32_ps(acl[v]), wsl));
          _mm512_storeu_ps(a + v * kLanes,
                           _mm512_fmadd_ps(_mm512_loadu_ps(a + v * kLanes), alpha, sum));
        }
      }
    }
  }

  // Out: (acc + min terms) in natural order, / l as fp16, or into the partial.
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t n = h - h0, hb = n / 8;
    const float* a = w.acc + n * kD128;
    const float mg[2] = {w.macc[hb * kLanes + chunk_lane(n % 8, 0)],
                         w.macc[hb * kLanes + chunk_lane(n % 8, 1)]};
    for (int64_t v = 0; v < 8; ++v) {
      const int64_t half = v / 4, k = v % 4;
      for (int64_t q = 0; q < kLanes; ++q) {
        const int64_t e = 32 * (q / 4) + 16 * half + 4 * (q % 4) + k;
        w.x[e] = a[v * kLanes + q] + mg[q / 8];
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

template void attend_int4_d128<true>(const HostKvCall&, const HostKvTask&, float*);
template void attend_int4_d128<false>(const HostKvCall&, const HostKvTask&, float*);

}  // namespace strata::compute::detail

#endif
