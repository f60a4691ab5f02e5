// What the two files of the int4-g64, head_dim 128 AVX-512 kernel (host_kv_avx512_int4.cc: the
// task, the query, the per-head key form and the output; host_kv_avx512_int4_gqa.cc: the unit key
// form and the value pass) share: the notes on the arithmetic, the digit helpers, a task's scratch
// (Int4Task) and the units each file calls in the other. Included only by those two files, inside
// their AVX-512 feature guard; every inline function is internal to the including file.
#pragma once

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
// Key side. "Low" vector L holds the low nibbles of a head's 64 code bytes (elements 2j), "high"
// vector H the high nibbles (2j + 1); dword i of both covers elements 8i .. 8i + 7 (dwords 0-7
// group 0, 8-15 group 1). A query head's digits are the same two byte vectors per digit.
//  - Per-head form (any group size): one accumulator per query head with lanes in the codes'
//    order; after the dot products of 16 query heads, a three-level reduction leaves two vectors
//    of (head, group) sums in "chunk order": lane 4c + i holds head i (c = 0, 1) or 4 + i
//    (c = 2, 3) of the eight, group c % 2.
//  - Unit form (G = Hq / Hkv of 2, 4 or a multiple of 8): a unit is 8 / U query heads of one kv
//    head (U = 4, 2, 1), and its accumulator's lane 8g + n U + u belongs to head n, group g, and
//    a U-th of the group's dwords. Step t permutes the code vectors so that the lane holds code
//    dword 8g + t U + u (vpermd, shared by the unit's heads), and the query digits are stored in
//    the same lane order, so 8 / U steps x (L, H) x 3 digits = 48 / U vpdpbusd give each lane
//    its sums with no reduction across lanes but a sum over the U lanes of a (head, group). The
//    three digits keep their own sums (each at most 64 x 8 x 128 in magnitude), combined in fp32.
// Value side: the code bytes of a row quad are regrouped so that each dword holds one byte
// position of the four rows (vpunpck[lh]bw, vshufi64x2, vpunpck[lh]wd); vector v (0, 1) of group
// g has in lane 4a + t byte 16 (a % 2) + 8 (a / 2) + 4v + t of the group, so all its lanes use
// the group's weights: the weights' dword (four rows' digit bytes) is a broadcast operand. Dotted
// as full bytes F = lo + 16 hi and as their low nibbles L, sum W F - sum W L = 16 sum W hi gives
// the high-nibble sums without extracting them; L and F sums start at -8 and -136 x sum W, so
// their difference / 16 is sum W (hi - 8) exactly.

constexpr int64_t kBlock = 64;                    // positions per block: scores, softmax, values
constexpr int64_t kQuads = kBlock / 4;            // row quads per block
constexpr float kDigitRange = 127.0f * 65536.0f;  // R: the integers' largest magnitude
constexpr int32_t kDigit1Bias = 128, kDigit2Bias = 32896;  // byte k of x + bias_k is digit k
constexpr int64_t kHeadDigitBytes = 3 * 2 * 64;            // a query head's digits: [3][L/H][64]

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
    // vpdpbusd is AVX512-VNNI; written in assembly so the files that include this one need no
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

// dot_bytes with b the 64 bytes at `b` (a memory operand of vpdpbusd).
template <bool kVnni, bool kSmall>
inline __m512i dot_bytes_at(__m512i acc, __m512i a, const int8_t* b) {
  if constexpr (kVnni) {
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "m"(*reinterpret_cast<const int8_t(*)[64]>(b)));
    return acc;
  } else {
    return dot_bytes<false, kSmall>(acc, a, _mm512_loadu_si512(b));
  }
}

// dot_bytes with b the dword at `b` in every lane (a broadcast operand of vpdpbusd).
template <bool kVnni, bool kSmall>
inline __m512i dot_bytes_bcast(__m512i acc, __m512i a, const int32_t* b) {
  if constexpr (kVnni) {
    asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*b));
    return acc;
  } else {
    return dot_bytes<false, kSmall>(acc, a, _mm512_set1_epi32(*b));
  }
}

// One query head as digits: qv [3][L/H][64] (digit k of element 2p at byte p of L, of 2p + 1 at
// byte p of H), per code dword i the sum of its 8 digits sd[k][i], and per group sq * scale and
// sum(q_g) * scale.
struct HeadDigits {
  alignas(64) int8_t qv[kHeadDigitBytes];
  alignas(64) int32_t sd[3][kLanes];
  float ka[2], kb[2];
};

template <bool kVnni>
inline void quantise_query_head(const uint16_t* q, float scale, HeadDigits& hd) {
  const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (int64_t gi = 0; gi < 2; ++gi) {
    __m512 v[4];
    __m512 mx = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
    for (int64_t e = 0; e < 4; ++e) {
      v[e] = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + gi * 64 + e * kLanes)));
      mx = _mm512_max_ps(mx, _mm512_abs_ps(v[e]));
      sum = _mm512_add_ps(sum, v[e]);
    }
    const float maxabs = _mm512_reduce_max_ps(mx);
    const float inv = maxabs > 0.0f ? kDigitRange / maxabs : 0.0f;
    hd.ka[gi] = maxabs / kDigitRange * scale;
    hd.kb[gi] = _mm512_reduce_add_ps(sum) * scale;
    // Q = round(q / sq), |Q| <= R (+1 from rounding); digit k is byte k of Q + bias_k.
    // Elements 16e .. 16e + 15 are bytes 8e .. 8e + 7 of the L and H vectors.
    for (int64_t e = 0; e < 4; ++e) {
      const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(v[e], _mm512_set1_ps(inv)));
      const __m512i dk[3] = {
          qi, _mm512_srai_epi32(_mm512_add_epi32(qi, _mm512_set1_epi32(kDigit1Bias)), 8),
          _mm512_srai_epi32(_mm512_add_epi32(qi, _mm512_set1_epi32(kDigit2Bias)), 16)};
      for (int64_t k = 0; k < 3; ++k) {
        const __m128i b = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(dk[k]), even_odd);
        int8_t* dst = hd.qv + k * 128 + gi * 32 + e * 8;
        _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), b);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 64), _mm_unpackhi_epi64(b, b));
      }
    }
  }
  // Per dot lane the sums of the digits over its 8 elements, as dot products with ones.
  const __m512i ones8 = _mm512_set1_epi8(1);
  for (int64_t k = 0; k < 3; ++k) {
    __m512i s =
        dot_bytes<kVnni, true>(_mm512_setzero_si512(), ones8, _mm512_load_si512(hd.qv + k * 128));
    s = dot_bytes<kVnni, true>(s, ones8, _mm512_load_si512(hd.qv + k * 128 + 64));
    _mm512_store_si512(hd.sd[k], s);
  }
}

}  // namespace

// What one task of the int4-d128 kernel keeps, carved from the scratch. Outside the anonymous
// namespace, as the two files pass it between them; no other file includes it.
struct Int4Task {
  int64_t hs = 0;        // row stride of the scores
  int64_t halves = 0;    // half batches of 8 query heads
  float* acc = nullptr;  // [16 * batches, 8, 16] fp32, value-side lane order
  float* s = nullptr;    // [kBlock, hs]
  float *m = nullptr, *l = nullptr, *alpha = nullptr;
  // Per-head key form:
  int8_t* qv = nullptr;      // [16 * batches, 3, 2, 64] query digits (Q0, Q1, Q2) x (L, H)
  int32_t* kinit = nullptr;  // [16 * batches, 2, 16] starts of the two key sums per dot lane
  float* ka = nullptr;       // per half batch, 16 lanes in chunk order: sq * softmax scale
  float* kb = nullptr;       // sum(q_g) * softmax scale
  // Unit key form, per unit:
  int8_t* uq = nullptr;      // [units, 3, 8 / U, 2, 64] query digits in unit lane order
  int32_t* uinit = nullptr;  // [units, 3, 16] starts of the three digit sums
  float* ua = nullptr;       // [units, 16] sq * softmax scale
  float* ub = nullptr;       // [units, 16] sum(q_g) * softmax scale on lanes u = 0, else 0
  // Per half batch, 16 lanes in chunk order:
  int32_t* gidx = nullptr;    // group of the lane, counted from gbase
  int32_t* gbase = nullptr;   // [halves] first group (in the row) of the half batch
  uint32_t* gmask = nullptr;  // [halves] groups that may be loaded from gbase
  float* wsc = nullptr;       // this block's ws
  float* macc = nullptr;      // sum_j p_j (mn_jg + 8 s_jg), rescaled like acc
  int32_t* winit = nullptr;   // [4, halves, 16] starts of the L2, L10, F2, F10 value sums
  float* wf = nullptr;        // [kBlock, halves, 16] this block's w_jg
  int32_t* wq = nullptr;      // [kQuads, 3, halves, 16] digit k of W of a row quad, 4 bytes
  int32_t* fbuf = nullptr;    // [kQuads, 2 groups, F0 F1 L0 L1, 16] regrouped codes of a kv head
  float* x = nullptr;         // [128]
};

namespace {

// Scales (or mins) of the groups of half batch hb in row `row`, in chunk order.
inline __m512 group_values(const uint16_t* plane, int64_t row_groups, int64_t row,
                           const Int4Task& w, int64_t hb) {
  const __m256i h = _mm256_maskz_loadu_epi16(static_cast<__mmask16>(w.gmask[hb]),
                                             plane + row * row_groups + w.gbase[hb]);
  return _mm512_permutexvar_ps(_mm512_loadu_si512(w.gidx + hb * kLanes), _mm512_cvtph_ps(h));
}

// Prefetches kv head kvh's codes: its keys `ahead` rows on into L1 (none when 0), its values of
// this row into L2 for the value pass after the block, whose reads go down a column of rows.
// Called as each head is scored: a burst of them at the row's start stalls on the fill buffers.
inline void prefetch_codes(const HostKvCall& c, int64_t row, int64_t kvh, int64_t ahead) {
  const int64_t at = row * c.kv_heads * 64 + kvh * 64;
  if (ahead > 0) {
    _mm_prefetch(reinterpret_cast<const char*>(c.k.codes + at + ahead * c.kv_heads * 64),
                 _MM_HINT_T0);
  }
  _mm_prefetch(reinterpret_cast<const char*>(c.v.codes + at), _MM_HINT_T1);
}

}  // namespace

// Defined in host_kv_avx512_int4_gqa.cc, for both kVnni, kU of 1, 2 and 4 and kR of 1 and 2.

// The unit form's query: per unit its digits, digit sums and factors (Int4Task's uq, uinit, ua,
// ub) for the task's query heads.
template <bool kVnni, int kU>
void quantise_query_units(const HostKvCall& c, const HostKvTask& t, const Int4Task& w);

// Scores of kR key rows (rows[r], block positions js[r]) for the task's query heads in the unit
// form: U lanes per (head, group), 8 / U heads per unit (see the notes above). The rows are
// done side by side, each query digit vector loaded once for them.
template <bool kVnni, int kU, int kR>
void score_rows_units(const HostKvCall& c, const HostKvTask& t, const Int4Task& w,
                      const int64_t* rows, const int64_t* js, bool prefetch, const int64_t* ahead);

// The value pass of the block of nb positions from b0, after its softmax: the weights as digits,
// then acc += ws * sum_j W_j (c_j - 8) and macc += the min terms, both first rescaled by alpha.
template <bool kVnni>
void accumulate_block_values(const HostKvCall& c, const HostKvTask& t, const Int4Task& w,
                             int64_t b0, int64_t nb);

}  // namespace strata::compute::detail
