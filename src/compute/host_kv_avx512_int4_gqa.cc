// The int4-g64, head_dim 128 AVX-512 kernel's grouped-query-head units (the notes on the
// arithmetic are in host_kv_avx512_int4_impl.h): the unit key form, which scores a kv head's key
// codes for 8 / U of its query heads at once, and the value pass, which regroups a kv head's value
// codes once for all its query heads. Compiled with the AVX-512 flags only, like
// host_kv_avx512_int4.cc.

#include "compute/host_kv_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__) && \
    defined(__FMA__)

#include "compute/host_kv_avx512_int4_impl.h"

namespace strata::compute::detail {
namespace {

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

// The unit form's vpermd indices: step t of U, lane 8g + r -> code dword 8g + t U + r % U.
struct UnitIdx {
  alignas(64) int32_t idx[8][16];
};
constexpr UnitIdx make_unit_idx(int u) {
  UnitIdx t{};
  for (int step = 0; step < 8 / u; ++step) {
    for (int lane = 0; lane < 16; ++lane)
      t.idx[step][lane] = 8 * (lane / 8) + step * u + lane % 8 % u;
  }
  return t;
}
constexpr UnitIdx kUnitIdx[3] = {make_unit_idx(1), make_unit_idx(2), make_unit_idx(4)};

// The first value rows of quad q of one kv head (rows past nb repeat the last one; their
// weights are 0).
inline void quad_rows(const uint8_t* vcodes, int64_t row_bytes, int64_t nb, int64_t q,
                      const uint8_t** r) {
  r[0] = vcodes + 4 * q * row_bytes;
  if (4 * q + 3 < nb) {
    for (int64_t i = 1; i < 4; ++i) r[i] = r[i - 1] + row_bytes;
    return;
  }
  for (int64_t i = 1; i < 4; ++i) r[i] = vcodes + min64(4 * q + i, nb - 1) * row_bytes;
}

// Group g of the value codes of a row quad r[0..3], regrouped: out[v] the full bytes of vector v,
// out[2 + v] their low nibbles.
inline void regroup_quad(const uint8_t* const* r, int64_t g, __m512i* out) {
  __m512i row[4];
  for (int i = 0; i < 4; ++i) row[i] = _mm512_loadu_si512(r[i]);
  // Rows 0, 2 and 1, 3 side by side; then bytes of rows 0/1 and 2/3 paired, then all four.
  const __m512i x = g == 0 ? _mm512_shuffle_i64x2(row[0], row[2], 0x44)
                           : _mm512_shuffle_i64x2(row[0], row[2], 0xee);
  const __m512i y = g == 0 ? _mm512_shuffle_i64x2(row[1], row[3], 0x44)
                           : _mm512_shuffle_i64x2(row[1], row[3], 0xee);
  const __m512i ulo = _mm512_unpacklo_epi8(x, y), uhi = _mm512_unpackhi_epi8(x, y);
  const __m512i p01 = _mm512_shuffle_i64x2(ulo, uhi, 0x44);  // rows 0/1: ulo 0, 1, uhi 0, 1
  const __m512i p23 = _mm512_shuffle_i64x2(ulo, uhi, 0xee);  // rows 2/3: ulo 2, 3, uhi 2, 3
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  out[0] = _mm512_unpacklo_epi16(p01, p23);
  out[1] = _mm512_unpackhi_epi16(p01, p23);
  out[2] = _mm512_and_si512(out[0], lo4);
  out[3] = _mm512_and_si512(out[1], lo4);
}

}  // namespace

template <bool kVnni, int kU>
void quantise_query_units(const HostKvCall& c, const HostKvTask& t, const Int4Task& w) {
  constexpr int64_t kSteps = 8 / kU, kHeads = 8 / kU;
  const int64_t hq = c.num_heads, group = hq / c.kv_heads;
  const int64_t h0 = t.kv_begin * group, h1 = t.kv_end * group;
  const uint16_t* qrow = c.q + t.row * hq * kD128;
  // Head n of a unit owns lanes 8g + n U + u; step t's lane takes the code dword of
  // kUnitIdx, so the same permutes move the head's digits and digit sums into place.
  const UnitIdx& uidx = kUnitIdx[kU == 1 ? 0 : kU == 2 ? 1 : 2];
  const __m512i lane_r = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i lane_head = _mm512_srli_epi32(lane_r, kU == 1 ? 0 : kU == 2 ? 1 : 2);
  const __m512i lane_u = _mm512_and_si512(lane_r, _mm512_set1_epi32(kU - 1));
  for (int64_t h = h0; h < h1; ++h) {
    HeadDigits hd;
    quantise_query_head<kVnni>(qrow + h * kD128, c.scale, hd);
    const int64_t unit = (h - h0) / kHeads, n = (h - h0) % kHeads;
    const __mmask16 mine =
        _mm512_cmpeq_epi32_mask(lane_head, _mm512_set1_epi32(static_cast<int>(n)));
    const __mmask16 lead = _mm512_mask_cmpeq_epi32_mask(mine, lane_u, _mm512_setzero_si512());
    const __m512 ka =
        _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(hd.ka[0]), _mm512_set1_ps(hd.ka[1]));
    const __m512 kb =
        _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(hd.kb[0]), _mm512_set1_ps(hd.kb[1]));
    _mm512_mask_storeu_ps(w.ua + unit * kLanes, mine, ka);
    _mm512_mask_storeu_ps(w.ub + unit * kLanes, mine, _mm512_maskz_mov_ps(lead, kb));
    int8_t* uq = w.uq + unit * 3 * kSteps * 2 * 64;
    for (int64_t k = 0; k < 3; ++k) {
      const __m512i sd = _mm512_load_si512(hd.sd[k]);
      const __m512i dl = _mm512_load_si512(hd.qv + k * 128);
      const __m512i dh = _mm512_load_si512(hd.qv + k * 128 + 64);
      __m512i sum = _mm512_setzero_si512();
      for (int64_t step = 0; step < kSteps; ++step) {
        const __m512i idx = _mm512_load_si512(uidx.idx[step]);
        int8_t* d = uq + (k * kSteps + step) * 2 * 64;
        _mm512_mask_storeu_epi32(d, mine, _mm512_permutexvar_epi32(idx, dl));
        _mm512_mask_storeu_epi32(d + 64, mine, _mm512_permutexvar_epi32(idx, dh));
        sum = _mm512_add_epi32(sum, _mm512_permutexvar_epi32(idx, sd));
      }
      _mm512_mask_storeu_epi32(w.uinit + (unit * 3 + k) * kLanes, mine,
                               _mm512_mullo_epi32(sum, _mm512_set1_epi32(-8)));
    }
  }
}

template <bool kVnni, int kU, int kR>
void score_rows_units(const HostKvCall& c, const HostKvTask& t, const Int4Task& w,
                      const int64_t* rows, const int64_t* js, bool prefetch, const int64_t* ahead) {
  constexpr int kSteps = 8 / kU, kHeads = 8 / kU;
  const UnitIdx& uidx = kUnitIdx[kU == 1 ? 0 : kU == 2 ? 1 : 2];
  const int64_t group = c.num_heads / c.kv_heads, units_per_kv = group / kHeads;
  const int64_t units = (t.kv_end - t.kv_begin) * units_per_kv;
  const int64_t row_groups = c.kv_heads * 2, row_bytes = c.kv_heads * 64;
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  // Lanes 0-7 take group 0 of a kv head, lanes 8-15 group 1.
  const __m512i gsel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  __m512 sc8[kR], mid8[kR];
  int64_t k0 = -1;  // first kv head of the scales in sc8, mid8
  for (int64_t unit = 0; unit < units; ++unit) {
    const int64_t kvh = t.kv_begin + unit / units_per_kv;
    if (kvh >= k0 + 8 || k0 < 0) {  // scales and mins of up to 8 kv heads from kvh
      k0 = kvh;
      const int64_t nk = min64(8, t.kv_end - k0);
      const auto mk = static_cast<__mmask16>((uint32_t{1} << (2 * nk)) - 1);
      for (int r = 0; r < kR; ++r) {
        const int64_t g0 = rows[r] * row_groups + 2 * k0;
        sc8[r] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, c.k.scales + g0));
        mid8[r] = _mm512_fmadd_ps(sc8[r], _mm512_set1_ps(8.0f),
                                  _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, c.k.mins + g0)));
      }
    }
    const __m512i sel = _mm512_add_epi32(gsel, _mm512_set1_epi32(static_cast<int>(2 * (kvh - k0))));
    __m512i lo[kR], hi[kR], a[kR][3][2];
    for (int r = 0; r < kR; ++r) {
      if (prefetch && unit % units_per_kv == 0) prefetch_codes(c, rows[r], kvh, ahead[r]);
      const __m512i x = _mm512_loadu_si512(c.k.codes + rows[r] * row_bytes + kvh * 64);
      lo[r] = _mm512_and_si512(x, lo4);
      hi[r] = _mm512_and_si512(_mm512_srli_epi16(x, 4), lo4);
      for (int k = 0; k < 3; ++k) {
        a[r][k][0] = _mm512_loadu_si512(w.uinit + (unit * 3 + k) * kLanes);
        a[r][k][1] = _mm512_setzero_si512();
      }
    }
    const int8_t* qd = w.uq + unit * 3 * kSteps * 2 * 64;
    for (int step = 0; step < kSteps; ++step) {
      const __m512i idx = _mm512_load_si512(uidx.idx[step]);
      __m512i xl[kR], xh[kR];
      for (int r = 0; r < kR; ++r) {
        xl[r] = _mm512_permutexvar_epi32(idx, lo[r]);
        xh[r] = _mm512_permutexvar_epi32(idx, hi[r]);
      }
      for (int k = 0; k < 3; ++k) {
        const int8_t* d = qd + (k * kSteps + step) * 2 * 64;
        const __m512i dl = _mm512_load_si512(d), dh = _mm512_load_si512(d + 64);
        for (int r = 0; r < kR; ++r) {
          a[r][k][0] = dot_bytes<kVnni, true>(a[r][k][0], xl[r], dl);
          a[r][k][1] = dot_bytes<kVnni, true>(a[r][k][1], xh[r], dh);
        }
      }
    }
    const __m512 ua = _mm512_loadu_ps(w.ua + unit * kLanes);
    const __m512 ub = _mm512_loadu_ps(w.ub + unit * kLanes);
    for (int r = 0; r < kR; ++r) {
      __m512 sk[3];
      for (int k = 0; k < 3; ++k) {
        sk[k] = _mm512_cvtepi32_ps(_mm512_add_epi32(a[r][k][0], a[r][k][1]));
      }
      // Q . (c - 8) = 2^16 S2 + 2^8 S1 + S0.
      const __m512 f = _mm512_fmadd_ps(sk[2], _mm512_set1_ps(65536.0f),
                                       _mm512_fmadd_ps(sk[1], _mm512_set1_ps(256.0f), sk[0]));
      const __m512 sv = _mm512_fmadd_ps(f, _mm512_mul_ps(_mm512_permutexvar_ps(sel, sc8[r]), ua),
                                        _mm512_mul_ps(_mm512_permutexvar_ps(sel, mid8[r]), ub));
      // Per head: the sum of its U lanes in each group half.
      __m256 y = _mm256_add_ps(_mm512_castps512_ps256(sv),
                               _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sv), 1)));
      float* dst = w.s + js[r] * w.hs + t.kv_begin * group + unit * kHeads;
      if constexpr (kU == 1) {
        _mm256_storeu_ps(dst, y);
      } else if constexpr (kU == 2) {
        y = _mm256_hadd_ps(y, y);  // heads 0, 1 in lanes 0, 1; heads 2, 3 in lanes 4, 5
        _mm_storel_pi(reinterpret_cast<__m64*>(dst), _mm256_castps256_ps128(y));
        _mm_storel_pi(reinterpret_cast<__m64*>(dst + 2), _mm256_extractf128_ps(y, 1));
      } else {
        y = _mm256_hadd_ps(y, y);
        y = _mm256_hadd_ps(y, y);  // head 0 in lane 0, head 1 in lane 4
        dst[0] = _mm256_cvtss_f32(y);
        dst[1] = _mm_cvtss_f32(_mm256_extractf128_ps(y, 1));
      }
    }
  }
}

template <bool kVnni>
void accumulate_block_values(const HostKvCall& c, const HostKvTask& t, const Int4Task& w,
                             int64_t b0, int64_t nb) {
  const int64_t group = c.num_heads / c.kv_heads, h0 = t.kv_begin * group;
  const int64_t halves = w.halves, hs = w.hs;
  const int64_t row_groups = c.kv_heads * 2, row_bytes = c.kv_heads * 64;
  const int64_t base = t.slot * c.max_len;
  const __m512i pidx0 = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
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
      const __m512 mid =
          _mm512_fmadd_ps(sc, _mm512_set1_ps(8.0f), group_values(c.v.mins, row_groups, row, w, hb));
      msum = _mm512_fmadd_ps(p, mid, msum);
    }
    const __m512 alpha = _mm512_permutexvar_ps(pidx, _mm512_loadu_ps(w.alpha + hp));
    float* macc = w.macc + hb * kLanes;
    _mm512_storeu_ps(macc, _mm512_fmadd_ps(_mm512_loadu_ps(macc), alpha, msum));
    _mm512_storeu_ps(w.wsc + hb * kLanes, _mm512_mul_ps(wmax, _mm512_set1_ps(1.0f / kDigitRange)));
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
  // acc += ws * sum_j W_j (c_j - 8): per kv head (its quads regrouped once when it has several
  // query heads), per query head and group, 12 int32 sums over the block.
  for (int64_t kvh = t.kv_begin; kvh < t.kv_end; ++kvh) {
    const uint8_t* vcodes = c.v.codes + (base + b0) * row_bytes + kvh * 64;
    const bool buffered = group > 1;
    if (buffered) {
      for (int64_t q = 0; q < quads; ++q) {
        const uint8_t* r[4];
        quad_rows(vcodes, row_bytes, nb, q, r);
        for (int64_t g = 0; g < 2; ++g) {
          __m512i f[4];
          regroup_quad(r, g, f);
          for (int i = 0; i < 4; ++i) {
            _mm512_storeu_si512(w.fbuf + ((q * 2 + g) * 4 + i) * kLanes, f[i]);
          }
        }
      }
    }
    for (int64_t rq = 0; rq < group; ++rq) {
      const int64_t h = kvh * group + rq, n = h - h0, hb = n / 8;
      const __m512 alpha = _mm512_set1_ps(w.alpha[h]);
      for (int64_t g = 0; g < 2; ++g) {
        const int64_t lane = hb * kLanes + chunk_lane(n % 8, g);
        // [v][digit]: sums over L (low nibbles) and F (whole bytes).
        __m512i sl[2][3], sf[2][3];
        for (int v = 0; v < 2; ++v) {
          sl[v][0] = _mm512_set1_epi32(w.winit[halves * kLanes + lane]);
          sl[v][1] = _mm512_setzero_si512();
          sl[v][2] = _mm512_set1_epi32(w.winit[lane]);
          sf[v][0] = _mm512_set1_epi32(w.winit[3 * halves * kLanes + lane]);
          sf[v][1] = _mm512_setzero_si512();
          sf[v][2] = _mm512_set1_epi32(w.winit[2 * halves * kLanes + lane]);
        }
        for (int64_t q = 0; q < quads; ++q) {
          __m512i f[4];
          if (buffered) {
            for (int i = 0; i < 4; ++i) {
              f[i] = _mm512_loadu_si512(w.fbuf + ((q * 2 + g) * 4 + i) * kLanes);
            }
          } else {
            const uint8_t* r[4];
            quad_rows(vcodes, row_bytes, nb, q, r);
            regroup_quad(r, g, f);
          }
          const int32_t* wq = w.wq + q * 3 * halves * kLanes + lane;
          for (int k = 0; k < 3; ++k) {
            for (int v = 0; v < 2; ++v) {
              sl[v][k] = dot_bytes_bcast<kVnni, true>(sl[v][k], f[2 + v], wq);
              sf[v][k] = dot_bytes_bcast<kVnni, false>(sf[v][k], f[v], wq);
            }
            wq += halves * kLanes;
          }
        }
        const __m512 ws = _mm512_set1_ps(w.wsc[lane]);
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
            float* a = w.acc + n * kD128 + ((g * 2 + v) * 2 + kind) * kLanes;
            _mm512_storeu_ps(
                a, _mm512_fmadd_ps(_mm512_loadu_ps(a), alpha, _mm512_mul_ps(vals[kind], ws)));
          }
        }
      }
    }
  }
}

#define STRATA_INT4_UNIT_FORM(kVnni, kU)                                                        \
  template void quantise_query_units<kVnni, kU>(const HostKvCall&, const HostKvTask&,           \
                                                const Int4Task&);                               \
  template void score_rows_units<kVnni, kU, 1>(const HostKvCall&, const HostKvTask&,            \
                                               const Int4Task&, const int64_t*, const int64_t*, \
                                               bool, const int64_t*);                           \
  template void score_rows_units<kVnni, kU, 2>(const HostKvCall&, const HostKvTask&,            \
                                               const Int4Task&, const int64_t*, const int64_t*, \
                                               bool, const int64_t*);
STRATA_INT4_UNIT_FORM(true, 1)
STRATA_INT4_UNIT_FORM(true, 2)
STRATA_INT4_UNIT_FORM(true, 4)
STRATA_INT4_UNIT_FORM(false, 1)
STRATA_INT4_UNIT_FORM(false, 2)
STRATA_INT4_UNIT_FORM(false, 4)
#undef STRATA_INT4_UNIT_FORM

template void accumulate_block_values<true>(const HostKvCall&, const HostKvTask&, const Int4Task&,
                                            int64_t, int64_t);
template void accumulate_block_values<false>(const HostKvCall&, const HostKvTask&, const Int4Task&,
                                             int64_t, int64_t);

}  // namespace strata::compute::detail

#endif
