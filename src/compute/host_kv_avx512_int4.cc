// The AVX-512 kernel of host_kv_attention() for int4-g64 KV with head_dim 128: scores and
// weighted sums computed in the quantised domain with 8-bit integer dot products. Compiled, like
// host_kv_avx512.cc, with the AVX-512 flags only (see that file's header for why no AVX-512 code
// can leak into the rest of the program); the one AVX512-VNNI instruction (vpdpbusd) is inline
// assembly, run only when HostKvCall::vnni says the CPU has it.

#include "compute/host_kv_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__) && \
    defined(__FMA__)

#include "compute/host_kv_avx512_common.h"

namespace strata::compute::detail {
namespace {

// ---- int4-g64 with head_dim 128: arithmetic in the quantised domain ---------------------------
//
// A head of one row is 64 bytes of codes: two groups, each with a scale s and a min mn; byte j
// holds element 2j in its low nibble and 2j + 1 in its high nibble. With the codes centred,
// s c + mn = s (c - 8) + (mn + 8 s), so
//   q . k = sum_g s_g (q_g . (c_g - 8)) + (mn_g + 8 s_g) sum(q_g).
// The query is scaled per group of 64 by sq = max|q_g| / R, R = 127 * 2^16, to integers Q of 23
// bits, written as three signed bytes (signed digits: Q = 2^16 Q2 + 2^8 Q1 + Q0, each in
// [-128, 127]), so q_g . c_g is an exact integer sum of byte products (vpdpbusd: unsigned codes
// times signed digits, four per dword lane), and sum(q_g) comes from the fp16 query itself.
// P . V likewise: sum_j p_j (s_jg c_j + mn_jg) = sum_j w_jg (c_j - 8) + sum_j p_j (mn_jg + 8 s_jg),
// w_jg = p_j s_jg. Per block of positions w is scaled per (head, group) by ws = max_j w_jg / R to
// integers W, again three signed digits; the code bytes of four rows are interleaved so that each
// dword holds one byte position of the four rows, and one vpdpbusd adds W_j x code over them.
// Precision: 23 bits per query or weight (a rounding of 2^-24 of the group's largest, as fine as
// fp32's), which the tests need: outputs are often small differences of terms ten times larger,
// and their tolerance is the output's fp16 rounding (16 bits were measured not to be enough).
// The -8 of the centring is applied exactly in the integer sums (they start at -8 x the sum of
// the integers), so the fp32 terms stay about as large as the values themselves, as in the
// reference's dequantise-then-dot.
//
// Lane layouts. Key side: "low" vector L holds the low nibbles of a head's 64 bytes (elements
// 2j), "high" vector H the high nibbles (2j + 1); dword lane i of both covers elements
// 8i .. 8i + 7: lanes 0-7 belong to group 0, 8-15 to group 1. The query digits are stored as the
// same two byte vectors per digit. After the dot products of 16 query heads, a three-level
// reduction leaves two vectors of (head, group) sums in "chunk order": lane 4c + i holds head i
// (c = 0, 1) or 4 + i (c = 2, 3) of the eight, group c % 2.
// Value side: four rows' code bytes interleaved (vpunpck[lh]bw, then vpunpck[lh]wd) give, for
// half h (0, 1) and vector v (0, 1), dwords whose lane 4a + t holds code byte 16a + 8h + 4v + t
// of the four rows, a = 0..3 the 128-bit lane (lanes 0-7 group 0, 8-15 group 1). Dotted as full
// bytes F = lo + 16 hi and as their low nibbles L, sum W F - sum W L = 16 sum W hi gives the
// high-nibble sums without extracting them; L and F sums start at -8 and -136 x sum W, so
// their difference / 16 is sum W (hi - 8) exactly.

constexpr int64_t kBlock = 32;                    // positions per block: scores, softmax, values
constexpr int64_t kQuads = kBlock / 4;            // row quads per block
constexpr float kDigitRange = 127.0f * 65536.0f;  // R: the integers' largest magnitude
constexpr int32_t kDigit1Bias = 128, kDigit2Bias = 32896;  // byte k of x + bias_k is digit k

// vpshufb indices that move byte k of every dword to byte r of it (and clear the rest), for the
// value weights' digit k of row r of a quad.
struct PackTable {
  alignas(64) int8_t idx[3][4][64];
};
constexpr PackTable make_pack_table() {
  PackTable t{};
  for (int k = 0; k < 3; ++k) {
    for (int r = 0; r < 4; ++r) {
      for (int b = 0; b < 64; ++b) {
        const int dword = (b % 16) / 4;  // within the 128-bit lane
        t.idx[k][r][b] = static_cast<int8_t>(b % 4 == r ? 4 * dword + k : -128);
      }
    }
  }
  return t;
}
constexpr PackTable kPack = make_pack_table();

// Chunk-order lane of head i (0..7) of a half batch, group gi.
constexpr int chunk_lane(int64_t i, int64_t gi) {
  return static_cast<int>((i / 4) * 8 + gi * 4 + i % 4);
}

// acc + per dword lane the sum of the four products of the unsigned bytes of a and the signed
// bytes of b (vpdpbusd). kSmall: a's bytes are below 16, so AVX512-BW's vpmaddubsw cannot
// saturate; otherwise the bytes are widened to words first.
template <bool kVnni, bool kSmall>
inline __m512i dot_bytes(__m512i acc, __m512i a, __m512i b) {
  if constexpr (kVnni) {
    // vpdpbusd is AVX512-VNNI; written in assembly so the rest of this file needs no
    // -mavx512vnni (the caller checked the CPU).
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
  } else if constexpr (kSmall) {
    return _mm512_add_epi32(acc,
                            _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), _mm512_set1_epi16(1)));
  } else {
    const __m512i a_even = _mm512_and_si512(a, _mm512_set1_epi16(0x00ff));
    const __m512i a_odd = _mm512_srli_epi16(a, 8);
    const __m512i b_even = _mm512_srai_epi16(_mm512_slli_epi16(b, 8), 8);
    const __m512i b_odd = _mm512_srai_epi16(b, 8);
    return _mm512_add_epi32(
        acc, _mm512_add_epi32(_mm512_madd_epi16(a_even, b_even), _mm512_madd_epi16(a_odd, b_odd)));
  }
}

// What one task of the int4-d128 kernel keeps, carved from the scratch.
struct Int4Task {
  int64_t hs = 0;            // row stride of the scores
  int64_t halves = 0;        // half batches of 8 query heads
  float* acc = nullptr;      // [16 * batches, 8, 16] fp32, value-side lane order
  int8_t* qv = nullptr;      // [16 * batches, 3, 2, 64] query digits (Q0, Q1, Q2) x (L, H)
  int32_t* kinit = nullptr;  // [16 * batches, 2, 16] starts of the two key sums per dot lane
  float* s = nullptr;        // [kBlock, hs]
  float *m = nullptr, *l = nullptr, *alpha = nullptr;
  // Per half batch, 16 lanes in chunk order:
  float* ka = nullptr;        // sq * softmax scale
  float* kb = nullptr;        // sum(q_g) * softmax scale
  int32_t* gidx = nullptr;    // group of the lane, counted from gbase
  int32_t* gbase = nullptr;   // [halves] first group (in the row) of the half batch
  uint32_t* gmask = nullptr;  // [halves] groups that may be loaded from gbase
  float* wsc = nullptr;       // this block's ws
  float* macc = nullptr;      // sum_j p_j (mn_jg + 8 s_jg), rescaled like acc
  int32_t* winit = nullptr;   // [4, halves, 16] starts of the L2, L10, F2, F10 value sums
  float* wf = nullptr;        // [kBlock, halves, 16] this block's w_jg
  int32_t* wq = nullptr;      // [kQuads, 3, halves, 16] digit k of W of a row quad, 4 bytes
  int32_t* fbuf = nullptr;    // [kQuads, 2, 2, 16] interleaved code bytes of one kv head
  float* x = nullptr;         // [128]
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

// Lanes 0-7 from a[lane0], 8-15 from a[lane1].
inline __m512i pick2(const int32_t* a, int lane0, int lane1) {
  return _mm512_mask_set1_epi32(_mm512_set1_epi32(a[lane0]), 0xff00, a[lane1]);
}
inline __m512 pick2(const float* a, int lane0, int lane1) {
  return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a[lane0]), _mm512_set1_ps(a[lane1]));
}

// The two interleaved code vectors of half `half` of a quad of value rows r[0..3] (see above).
inline void interleave_quad(const __m512i* r, int64_t half, __m512i& f0, __m512i& f1) {
  const __m512i u01 =
      half == 0 ? _mm512_unpacklo_epi8(r[0], r[1]) : _mm512_unpackhi_epi8(r[0], r[1]);
  const __m512i u23 =
      half == 0 ? _mm512_unpacklo_epi8(r[2], r[3]) : _mm512_unpackhi_epi8(r[2], r[3]);
  f0 = _mm512_unpacklo_epi16(u01, u23);
  f1 = _mm512_unpackhi_epi16(u01, u23);
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
  w.qv = carve<int8_t>(at, padded * 6 * 64 / 4);
  w.kinit = carve<int32_t>(at, padded * 2 * kLanes);
  w.s = carve<float>(at, kBlock * w.hs);
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
  w.winit = carve<int32_t>(at, 4 * halves * kLanes);
  w.wf = carve<float>(at, kBlock * halves * kLanes);
  w.wq = carve<int32_t>(at, kQuads * 3 * halves * kLanes);
  w.fbuf = carve<int32_t>(at, kQuads * 4 * kLanes);
  w.x = carve<float>(at, kD128);
  const int64_t hs = w.hs;

  // The query: per head its digits and dot starts; per half batch its groups and coefficients.
  const uint16_t* qrow = c.q + t.row * hq * kD128;
  const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m512i ones8 = _mm512_set1_epi8(1);
  for (int64_t hb = 0; hb < halves; ++hb) {
    const int64_t first = h0 + hb * 8;
    const int64_t kv_first = (first < h1 ? first : h0) / group;
    w.gbase[hb] = static_cast<int32_t>(2 * kv_first);
    const int64_t loadable = min64(kLanes, row_groups - 2 * kv_first);
    w.gmask[hb] = (1u << loadable) - 1;
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t h = first + i, n = h - h0;
      int8_t* qv = w.qv + n * 6 * 64;
      int32_t* kinit = w.kinit + n * 2 * kLanes;
      if (h >= h1) {
        for (int64_t gi = 0; gi < 2; ++gi) {
          const int lane = static_cast<int>(hb * kLanes) + chunk_lane(i, gi);
          w.ka[lane] = w.kb[lane] = 0.0f;
          w.gidx[lane] = 0;
        }
        for (int64_t b = 0; b < 6 * 64; b += 64) {
          _mm512_storeu_si512(qv + b, _mm512_setzero_si512());
        }
        _mm512_storeu_si512(kinit, _mm512_setzero_si512());
        _mm512_storeu_si512(kinit + kLanes, _mm512_setzero_si512());
        continue;
      }
      for (int64_t gi = 0; gi < 2; ++gi) {
        const int lane = static_cast<int>(hb * kLanes) + chunk_lane(i, gi);
        w.gidx[lane] = static_cast<int32_t>(2 * (h / group - kv_first) + gi);
        __m512 v[4];
        __m512 mx = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
        for (int64_t e = 0; e < 4; ++e) {
          v[e] = _mm512_cvtph_ps(_mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(qrow + h * kD128 + gi * 64 + e * kLanes)));
          mx = _mm512_max_ps(mx, _mm512_abs_ps(v[e]));
          sum = _mm512_add_ps(sum, v[e]);
        }
        const float maxabs = _mm512_reduce_max_ps(mx);
        const float inv = maxabs > 0.0f ? kDigitRange / maxabs : 0.0f;
        w.ka[lane] = maxabs / kDigitRange * c.scale;
        w.kb[lane] = _mm512_reduce_add_ps(sum) * c.scale;
        // Q = round(q / sq), |Q| <= R (+1 from rounding); digit k is byte k of Q + bias_k.
        // Elements 16e' .. 16e' + 15 are bytes 8e' .. 8e' + 7 of the L and H vectors.
        for (int64_t e = 0; e < 4; ++e) {
          const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(v[e], _mm512_set1_ps(inv)));
          const __m512i dk[3] = {
              qi, _mm512_srai_epi32(_mm512_add_epi32(qi, _mm512_set1_epi32(kDigit1Bias)), 8),
              _mm512_srai_epi32(_mm512_add_epi32(qi, _mm512_set1_epi32(kDigit2Bias)), 16)};
          for (int64_t k = 0; k < 3; ++k) {
            const __m128i b = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(dk[k]), even_odd);
            int8_t* dst = qv + k * 128 + gi * 32 + e * 8;
            _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), b);
            _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 64), _mm_unpackhi_epi64(b, b));
          }
        }
      }
      // Per dot lane the sums of the digits over its 8 elements, as dot products with ones:
      // the high sum starts at -8 x sum(Q2), the low one at -8 x sum(2^8 Q1 + Q0).
      __m512i sd[3];
      for (int64_t k = 0; k < 3; ++k) {
        sd[k] =
            dot_bytes<kVnni, true>(_mm512_setzero_si512(), ones8, _mm512_loadu_si512(qv + k * 128));
        sd[k] = dot_bytes<kVnni, true>(sd[k], ones8, _mm512_loadu_si512(qv + k * 128 + 64));
      }
      const __m512i low = _mm512_add_epi32(_mm512_slli_epi32(sd[1], 8), sd[0]);
      _mm512_storeu_si512(kinit,
                          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sd[2], 3)));
      _mm512_storeu_si512(kinit + kLanes,
                          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(low, 3)));
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
  const __m512i lo4 = _mm512_set1_epi8(0x0f);

  for (int64_t b0 = t.begin; b0 < t.end; b0 += kBlock) {
    const int64_t nb = min64(kBlock, t.end - b0);
    // Scores: per row, each kv head's codes split into nibbles once for its query heads.
    for (int64_t j = 0; j < nb; ++j) {
      const int64_t row = base + b0 + j;
      const uint8_t* codes = c.k.codes + row * row_bytes;
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
        const __m512i x = _mm512_loadu_si512(codes + kvh * 64);
        const __m512i lo = _mm512_and_si512(x, lo4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), lo4);
        for (int64_t r = 0; r < group; ++r) {
          const int64_t qn = kvh * group + r - h0;
          const int8_t* qv = w.qv + qn * 6 * 64;
          // (2^8 (2^8 (Q2 . c - 8 sum Q2) + Q1 . c) + Q0 . c - 8 sum(2^8 Q1 + Q0) = Q . (c - 8):
          // at most 2^23 x 8 x 8 in magnitude, exact in int32.
          __m512i a = _mm512_loadu_si512(w.kinit + qn * 2 * kLanes);
          a = dot_bytes<kVnni, true>(a, lo, _mm512_loadu_si512(qv + 256));
          a = dot_bytes<kVnni, true>(a, hi, _mm512_loadu_si512(qv + 320));
          a = _mm512_slli_epi32(a, 8);
          a = dot_bytes<kVnni, true>(a, lo, _mm512_loadu_si512(qv + 128));
          a = dot_bytes<kVnni, true>(a, hi, _mm512_loadu_si512(qv + 192));
          __m512i b = _mm512_loadu_si512(w.kinit + (qn * 2 + 1) * kLanes);
          b = dot_bytes<kVnni, true>(b, lo, _mm512_loadu_si512(qv));
          b = dot_bytes<kVnni, true>(b, hi, _mm512_loadu_si512(qv + 64));
          dots[n++] = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(a, 8), b));
          if (n == kLanes) flush();
        }
      }
      if (n > 0) flush();
    }
    softmax_block(w.s, hs, nb, h0, batches, w.m, w.l, w.alpha);

    // Value weights w_jg = p_j s_jg per half batch, in chunk order; their block maximum; the
    // min terms sum_j p_j mn_jg; then W = w / ws as digits, four rows' bytes to a dword.
    const int64_t quads = (nb + 3) / 4;
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
      _mm512_storeu_ps(w.wsc + hb * kLanes,
                       _mm512_mul_ps(wmax, _mm512_set1_ps(1.0f / kDigitRange)));
      const __mmask16 live = _mm512_cmp_ps_mask(wmax, _mm512_setzero_ps(), _CMP_GT_OQ);
      const __m512 winv = _mm512_maskz_div_ps(live, _mm512_set1_ps(kDigitRange), wmax);
      __m512i sum2 = _mm512_setzero_si512(), sum_all = _mm512_setzero_si512();
      for (int64_t q = 0; q < quads; ++q) {
        __m512i d[3][4];  // [digit][row of the quad]: byte k of d[k][r] is digit k
        for (int r = 0; r < 4; ++r) {
          const int64_t j = 4 * q + r;
          const __m512i x = j < nb ? _mm512_cvtps_epi32(_mm512_mul_ps(
                                         _mm512_loadu_ps(w.wf + (j * halves + hb) * kLanes), winv))
                                   : _mm512_setzero_si512();
          d[0][r] = x;
          d[1][r] = _mm512_add_epi32(x, _mm512_set1_epi32(kDigit1Bias));
          d[2][r] = _mm512_add_epi32(x, _mm512_set1_epi32(kDigit2Bias));
          sum_all = _mm512_add_epi32(sum_all, x);
          sum2 = _mm512_add_epi32(sum2, _mm512_srai_epi32(d[2][r], 16));
        }
        for (int k = 0; k < 3; ++k) {
          // Byte k of each dword of row r's digits to byte r of it.
          const __m512i* idx = reinterpret_cast<const __m512i*>(kPack.idx[k]);
          const __m512i packed = _mm512_ternarylogic_epi32(
              _mm512_shuffle_epi8(d[k][0], _mm512_load_si512(idx)),
              _mm512_shuffle_epi8(d[k][1], _mm512_load_si512(idx + 1)),
              _mm512_or_si512(_mm512_shuffle_epi8(d[k][2], _mm512_load_si512(idx + 2)),
                              _mm512_shuffle_epi8(d[k][3], _mm512_load_si512(idx + 3))),
              0xfe);  // a | b | c
          _mm512_storeu_si512(w.wq + ((q * 3 + k) * halves + hb) * kLanes, packed);
        }
      }
      // Sums start at -8 (L) and -136 (F) x the weights' sums, per digit part: W2 and
      // W10 = 2^8 W1 + W0 = W - 2^16 W2.
      const __m512i sum10 = _mm512_sub_epi32(sum_all, _mm512_slli_epi32(sum2, 16));
      const __m512i parts[2] = {sum2, sum10};
      for (int p = 0; p < 2; ++p) {
        _mm512_storeu_si512(w.winit + (p * halves + hb) * kLanes,
                            _mm512_mullo_epi32(parts[p], _mm512_set1_epi32(-8)));
        _mm512_storeu_si512(w.winit + ((2 + p) * halves + hb) * kLanes,
                            _mm512_mullo_epi32(parts[p], _mm512_set1_epi32(-136)));
      }
    }
    // acc += ws * sum_j W_j (c_j - 8): per kv head (its quads interleaved once when it has
    // several query heads), per query head and half, 12 int32 sums over the block.
    for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
      const uint8_t* vcodes = c.v.codes + (base + b0) * row_bytes + kvh * 64;
      auto load_quad = [&](int64_t q, __m512i* r) {
        const uint8_t* p = vcodes + 4 * q * row_bytes;
        if (4 * q + 3 < nb) {
          for (int64_t i = 0; i < 4; ++i) r[i] = _mm512_loadu_si512(p + i * row_bytes);
          return;
        }
        for (int64_t i = 0; i < 4; ++i) {
          const int64_t j = min64(4 * q + i, nb - 1);  // rows past nb have weight 0
          r[i] = _mm512_loadu_si512(vcodes + j * row_bytes);
        }
      };
      const bool buffered = group > 1;
      if (buffered) {
        for (int64_t q = 0; q < quads; ++q) {
          __m512i r[4];
          load_quad(q, r);
          for (int64_t half = 0; half < 2; ++half) {
            __m512i f0, f1;
            interleave_quad(r, half, f0, f1);
            _mm512_storeu_si512(w.fbuf + ((q * 2 + half) * 2) * kLanes, f0);
            _mm512_storeu_si512(w.fbuf + ((q * 2 + half) * 2 + 1) * kLanes, f1);
          }
        }
      }
      for (int64_t rq = 0; rq < group; ++rq) {
        const int64_t n = kvh * group + rq - h0, hb = n / 8;
        const int lane0 = static_cast<int>(hb * kLanes) + chunk_lane(n % 8, 0), lane1 = lane0 + 4;
        const __m512 ws = pick2(w.wsc, lane0, lane1);
        const __m512 alpha = _mm512_set1_ps(w.alpha[h0 + n]);
        const __m512i init_l2 = pick2(w.winit, lane0, lane1);
        const __m512i init_l10 = pick2(w.winit + halves * kLanes, lane0, lane1);
        const __m512i init_f2 = pick2(w.winit + 2 * halves * kLanes, lane0, lane1);
        const __m512i init_f10 = pick2(w.winit + 3 * halves * kLanes, lane0, lane1);
        for (int64_t half = 0; half < 2; ++half) {
          // [v][digit]: sums over L (low nibbles) and F (whole bytes).
          __m512i sl[2][3], sf[2][3];
          for (int v = 0; v < 2; ++v) {
            sl[v][0] = init_l10;
            sl[v][1] = _mm512_setzero_si512();
            sl[v][2] = init_l2;
            sf[v][0] = init_f10;
            sf[v][1] = _mm512_setzero_si512();
            sf[v][2] = init_f2;
          }
          for (int64_t q = 0; q < quads; ++q) {
            __m512i f[2];
            if (buffered) {
              f[0] = _mm512_loadu_si512(w.fbuf + ((q * 2 + half) * 2) * kLanes);
              f[1] = _mm512_loadu_si512(w.fbuf + ((q * 2 + half) * 2 + 1) * kLanes);
            } else {
              __m512i r[4];
              load_quad(q, r);
              interleave_quad(r, half, f[0], f[1]);
            }
            const int32_t* wq = w.wq + q * 3 * halves * kLanes;
            __m512i wd[3];
            for (int k = 0; k < 3; ++k) wd[k] = pick2(wq + k * halves * kLanes, lane0, lane1);
            for (int v = 0; v < 2; ++v) {
              const __m512i lo = _mm512_and_si512(f[v], lo4);
              for (int k = 0; k < 3; ++k) {
                sl[v][k] = dot_bytes<kVnni, true>(sl[v][k], lo, wd[k]);
                sf[v][k] = dot_bytes<kVnni, false>(sf[v][k], f[v], wd[k]);
              }
            }
          }
          for (int v = 0; v < 2; ++v) {
            // L: elements of the low nibbles; H = (F - L) / 16: of the high nibbles.
            const __m512i l10 = _mm512_add_epi32(_mm512_slli_epi32(sl[v][1], 8), sl[v][0]);
            const __m512i f10 = _mm512_add_epi32(_mm512_slli_epi32(sf[v][1], 8), sf[v][0]);
            const __m512i h10 = _mm512_srai_epi32(_mm512_sub_epi32(f10, l10), 4);
            const __m512i h2 = _mm512_srai_epi32(_mm512_sub_epi32(sf[v][2], sl[v][2]), 4);
            const __m512 two16 = _mm512_set1_ps(65536.0f);
            const __m512 vals[2] = {
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(sl[v][2]), two16, _mm512_cvtepi32_ps(l10)),
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(h2), two16, _mm512_cvtepi32_ps(h10))};
            for (int kind = 0; kind < 2; ++kind) {
              float* a = w.acc + n * kD128 + ((half * 2 + v) * 2 + kind) * kLanes;
              _mm512_storeu_ps(
                  a, _mm512_fmadd_ps(_mm512_loadu_ps(a), alpha, _mm512_mul_ps(vals[kind], ws)));
            }
          }
        }
      }
    }
  }

  // Out: (acc + min terms) in natural order, / l as fp16, or into the partial. Vector
  // (half, v, kind) lane 4a + t holds element 2 (16a + 8 half + 4v + t) + kind.
  for (int64_t h = h0; h < h1; ++h) {
    const int64_t n = h - h0, hb = n / 8;
    const float* a = w.acc + n * kD128;
    const float mg[2] = {w.macc[hb * kLanes + chunk_lane(n % 8, 0)],
                         w.macc[hb * kLanes + chunk_lane(n % 8, 1)]};
    for (int64_t vec = 0; vec < 8; ++vec) {
      const int64_t half = vec / 4, v = (vec / 2) % 2, kind = vec % 2;
      for (int64_t lane = 0; lane < kLanes; ++lane) {
        const int64_t e = 2 * (16 * (lane / 4) + 8 * half + 4 * v + lane % 4) + kind;
        w.x[e] = a[vec * kLanes + lane] + mg[lane / 8];
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
