// Host-resident KV cache and CPU attention over it: layout offsets solved by hand, int4 append
// byte for byte equal to quantise_int4, and attention (fp16 and int4-g64, portable and AVX-512
// kernels, MHA and GQA, ragged and multi-token steps, sliding windows, split position ranges)
// against the CPU backend's attention fed the same fp16-rounded values.

#include "compute/host_kv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "compute/host_kv_kernels.h"
#include "compute/int4.h"

namespace strata::compute {
namespace {

std::vector<uint16_t> random_f16(int64_t n, std::mt19937& gen, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (auto& h : out) h = f32_to_f16(dist(gen));
  return out;
}

std::vector<float> widen(const uint16_t* h, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = f16_to_f32(h[i]);
  return out;
}

// The reference int4 round trip of fp16 rows [n, cols]: dequantise_int4(quantise_int4(rows)).
std::vector<float> int4_roundtrip(const uint16_t* rows, int64_t n, int64_t cols) {
  Tensor t =
      Tensor::wrap(const_cast<uint16_t*>(rows), DType::kF16, {n, cols}, MemoryKind::kHost, nullptr);
  std::vector<std::byte> blob(int4_blob_bytes(n, cols));
  EXPECT_TRUE(quantise_int4(t, blob).is_ok());
  Tensor back = dequantise_int4(*int4_view(blob, t.shape()));
  return std::vector<float>(back.data<float>(), back.data<float>() + n * cols);
}

struct OwnedCache {
  std::vector<std::byte> k, v;
  HostKvView view;
  explicit OwnedCache(const HostKvShape& shape)
      : k(shape.bytes_each(), std::byte{0x7f}), v(shape.bytes_each(), std::byte{0x7f}) {
    // 0x7f7f is an fp16 NaN: a kernel reading a position it must not see poisons its output.
    view = {shape, k.data(), v.data()};
  }
};

TEST(HostKvLayout, Int4OffsetsSolvedByHand) {
  // 2 slots x 3 positions = 6 rows of E = 2 heads x 64 = 128: codes 6 x 64 bytes = 384, then
  // 6 x 2 scales (24 bytes), then 6 x 2 mins.
  HostKvShape sh{2, 3, 2, 64, true};
  EXPECT_EQ(sh.bytes_each(), 384u + 24u + 24u);
  EXPECT_EQ(sh.bytes_each(), int4_blob_bytes(6, 128));
  EXPECT_EQ(sh.code_offset(4), 4u * 64u);
  EXPECT_EQ(sh.scale_offset(0), 384u);
  EXPECT_EQ(sh.scale_offset(5), 384u + 5u * 4u);
  EXPECT_EQ(sh.min_offset(0), 408u);
  EXPECT_EQ(sh.min_offset(5), 408u + 5u * 4u);
  HostKvShape f16{2, 3, 2, 64, false};
  EXPECT_EQ(f16.bytes_each(), 6u * 128u * 2u);
}

TEST(HostKvAppend, Fp16RowsLandAtSlotAndPosition) {
  HostKvShape sh{3, 5, 1, 16, false};
  OwnedCache c(sh);
  std::mt19937 gen(1);
  auto k = random_f16(2 * 16, gen), v = random_f16(2 * 16, gen);
  host_kv_append(c.view, 2, 3, 2, k.data(), v.data());
  const auto* ck = reinterpret_cast<const uint16_t*>(c.k.data());
  const auto* cv = reinterpret_cast<const uint16_t*>(c.v.data());
  const int64_t at = (2 * 5 + 3) * 16;
  EXPECT_EQ(std::vector<uint16_t>(ck + at, ck + at + 32), k);
  EXPECT_EQ(std::vector<uint16_t>(cv + at, cv + at + 32), v);
  EXPECT_EQ(ck[at - 1], 0x7f7f);  // the position before is untouched
}

TEST(HostKvAppend, Int4CacheEqualsQuantiseInt4ByteForByte) {
  // Fill every row of a cache by appends of different lengths in a scrambled order; the blobs
  // must equal quantise_int4 of the whole [slots * max_len, E] matrix.
  HostKvShape sh{3, 7, 2, 64, true};
  const int64_t e = sh.row_elems(), rows = sh.slots * sh.max_len;
  std::mt19937 gen(2);
  // Wide values, a constant group (scale 0) and negative ranges are all in there.
  auto k = random_f16(rows * e, gen, -30.0f, 20.0f), v = random_f16(rows * e, gen);
  for (int64_t i = 0; i < 64; ++i) k[static_cast<size_t>(5 * e + 64 + i)] = f32_to_f16(0.75f);
  OwnedCache c(sh);
  struct Piece {
    int64_t slot, pos, n;
  };
  for (Piece p : {Piece{1, 3, 4}, Piece{0, 0, 7}, Piece{2, 6, 1}, Piece{1, 0, 3}, Piece{2, 0, 6}}) {
    const int64_t r = p.slot * sh.max_len + p.pos;
    host_kv_append(c.view, p.slot, p.pos, p.n, k.data() + r * e, v.data() + r * e);
  }
  for (auto [data, blob] : {std::pair{&k, &c.k}, std::pair{&v, &c.v}}) {
    Tensor t = Tensor::wrap(data->data(), DType::kF16, {rows, e}, MemoryKind::kHost, nullptr);
    std::vector<std::byte> want(int4_blob_bytes(rows, e));
    ASSERT_TRUE(quantise_int4(t, want).is_ok());
    EXPECT_TRUE(*blob == want);
  }
}

TEST(HostKvAppendDeathTest, OutOfRangeSlotNamesIt) {
  HostKvShape sh{2, 4, 1, 16, false};
  OwnedCache c(sh);
  std::vector<uint16_t> row(16);
  EXPECT_DEATH(host_kv_append(c.view, 5, 0, 1, row.data(), row.data()), "slot 5");
  EXPECT_DEATH(host_kv_append(c.view, 1, 3, 2, row.data(), row.data()), "positions \\[3, 5\\)");
}

// ---- Attention against the CPU backend -----------------------------------------------------

struct SeqSpec {
  int32_t slot, past, n;
};

struct Case {
  std::string name;
  int64_t hq, hkv, d, slots, max_len;
  std::vector<SeqSpec> seqs;
  std::optional<int64_t> window;
};

enum class Kernel { kPortable, kDefault };

bool have_avx512() { return std::string(host_kv_kernel()) == "avx512"; }

class HostKvAttentionTest : public ::testing::Test {
 protected:
  HostKvAttentionTest() : pool_(4) {}

  // Runs `c` through host_kv_attention and through the CPU backend (int4_kv for an int4 cache)
  // from the same fp16 values; returns the host output widened, and the reference.
  void run(const Case& c, bool int4, const HostKvTuning& tuning, std::vector<float>* host,
           std::vector<float>* ref) {
    const int64_t d = c.d, e = c.hkv * d, qrow = c.hq * d;
    HostKvShape sh{c.slots, c.max_len, c.hkv, d, int4};
    OwnedCache cache(sh);
    CpuBackendOptions opts;
    opts.int4_kv = int4;
    auto backend = make_cpu_backend(pool_, opts);
    LayerKvCache rc{backend->allocate(DType::kF32, {c.slots, c.max_len, c.hkv, d}).value(),
                    backend->allocate(DType::kF32, {c.slots, c.max_len, c.hkv, d}).value()};

    std::mt19937 gen(7);
    int64_t t_count = 0;
    for (const SeqSpec& s : c.seqs) t_count += s.n;
    std::vector<uint16_t> q, k_new, v_new;
    std::vector<SeqSpan> spans;
    for (const SeqSpec& s : c.seqs) {
      // History: appended to the host cache, and written to the reference cache as the values
      // an int4 cache would hold (the reference rule) or the fp16 values.
      if (s.past > 0) {
        auto hk = random_f16(s.past * e, gen), hv = random_f16(s.past * e, gen);
        host_kv_append(cache.view, s.slot, 0, s.past, hk.data(), hv.data());
        auto fk = int4 ? int4_roundtrip(hk.data(), s.past, e) : widen(hk.data(), s.past * e);
        auto fv = int4 ? int4_roundtrip(hv.data(), s.past, e) : widen(hv.data(), s.past * e);
        const int64_t at = int64_t{s.slot} * c.max_len * e;
        std::memcpy(rc.k.data<float>() + at, fk.data(), fk.size() * sizeof(float));
        std::memcpy(rc.v.data<float>() + at, fv.data(), fv.size() * sizeof(float));
      }
      spans.push_back({s.slot, s.past, s.n, static_cast<int32_t>(q.size() / qrow)});
      auto sq = random_f16(s.n * qrow, gen), sk = random_f16(s.n * e, gen),
           sv = random_f16(s.n * e, gen);
      q.insert(q.end(), sq.begin(), sq.end());
      k_new.insert(k_new.end(), sk.begin(), sk.end());
      v_new.insert(v_new.end(), sv.begin(), sv.end());
    }
    const AttentionParams params{1.0f / std::sqrt(static_cast<float>(d)), c.window};

    std::vector<uint16_t> out(static_cast<size_t>(t_count * qrow), 0x7e00);
    host_kv_attention(pool_, cache.view, c.hq, q.data(), k_new.data(), v_new.data(), spans, params,
                      out.data(), tuning);
    *host = widen(out.data(), t_count * qrow);

    auto to_tensor = [&](const std::vector<uint16_t>& bits, int64_t heads) {
      Tensor t = backend->allocate(DType::kF32, {t_count, heads, d}).value();
      auto f = widen(bits.data(), static_cast<int64_t>(bits.size()));
      std::memcpy(t.data<float>(), f.data(), f.size() * sizeof(float));
      return t;
    };
    Tensor rq = to_tensor(q, c.hq), rk = to_tensor(k_new, c.hkv), rv = to_tensor(v_new, c.hkv);
    Tensor rout = backend->allocate(DType::kF32, {t_count, c.hq, d}).value();
    backend->attention(rq, rk, rv, rc, spans, params, rout);
    *ref = std::vector<float>(rout.data<float>(), rout.data<float>() + rout.numel());

    // The step's new rows are in the host cache.
    if (!int4) {
      const auto* ck = reinterpret_cast<const uint16_t*>(cache.k.data());
      for (const SeqSpan& sp : spans) {
        const int64_t at = (int64_t{sp.slot} * c.max_len + sp.past_len) * e;
        for (int64_t i = 0; i < sp.num_tokens * e; ++i) {
          ASSERT_EQ(ck[at + i], k_new[static_cast<size_t>(sp.offset * e + i)]);
        }
      }
    }
  }

  // Within the output's fp16 rounding (half an ulp, 2^-11 relative) plus fp32 noise.
  static void expect_matches(const std::vector<float>& host, const std::vector<float>& ref,
                             const std::string& what) {
    ASSERT_EQ(host.size(), ref.size()) << what;
    int reported = 0;
    for (size_t i = 0; i < host.size(); ++i) {
      const double tol = 5e-4 * std::abs(ref[i]) + 1e-5;
      if (!(std::abs(double{host[i]} - ref[i]) <= tol) && reported++ < 5) {
        ADD_FAILURE() << what << ": element " << i << " is " << host[i] << ", reference " << ref[i];
      }
    }
  }

  void check_all(const Case& c) {
    struct Variant {
      std::string name;
      HostKvTuning tuning;
    };
    std::vector<Variant> variants = {
        {"portable", {true, 0, 0}},
        {"portable chunk 7", {true, 7, 0}},
        {"default", {false, 0, 0}},
        {"default chunk 7", {false, 7, 0}},
        {"default chunk 16, 1 kv head per task", {false, 16, 1}},
        // The AVX-512 int4 kernel for head_dim 128 has a VNNI and an AVX512-BW form.
        {"default without VNNI", {false, 0, 0, -1, false}},
        {"default chunk 7 without VNNI, no prefetch", {false, 7, 0, 0, false}},
    };
    for (bool int4 : {false, true}) {
      if (int4 && c.d % 64 != 0) continue;
      for (const Variant& var : variants) {
        std::vector<float> host, ref;
        run(c, int4, var.tuning, &host, &ref);
        expect_matches(
            host, ref,
            c.name + (int4 ? " int4 " : " fp16 ") + var.name + " (" + host_kv_kernel() + ")");
      }
    }
  }

  ThreadPool pool_;
};

TEST_F(HostKvAttentionTest, TwoKeysByHand) {
  // One head of 16 dims, only dims 0 and 1 non-zero. The second token has q = [1, 0]: scores
  // 1 (k0 = [1, 0]) and 0 (k1 = [0, 1]), weights e/(e+1) and 1/(e+1) over v0 = [1, 2],
  // v1 = [3, 4]; the first token sees only v0.
  for (bool portable : {true, false}) {
    HostKvShape sh{1, 4, 1, 16, false};
    OwnedCache cache(sh);
    std::vector<uint16_t> q(32, 0), k(32, 0), v(32, 0), out(32, 0);
    q[0] = f32_to_f16(0.3f);
    q[1] = f32_to_f16(-0.7f);
    q[16] = f32_to_f16(1.0f);
    k[0] = f32_to_f16(1.0f);
    k[17] = f32_to_f16(1.0f);
    v[0] = f32_to_f16(1.0f);
    v[1] = f32_to_f16(2.0f);
    v[16] = f32_to_f16(3.0f);
    v[17] = f32_to_f16(4.0f);
    std::vector<SeqSpan> spans = {{0, 0, 2, 0}};
    HostKvTuning tuning;
    tuning.force_portable = portable;
    host_kv_attention(pool_, cache.view, 1, q.data(), k.data(), v.data(), spans,
                      AttentionParams{1.0f, {}}, out.data(), tuning);
    const double e1 = std::exp(1.0), p0 = e1 / (e1 + 1), p1 = 1 / (e1 + 1);
    EXPECT_EQ(f16_to_f32(out[0]), 1.0f);
    EXPECT_EQ(f16_to_f32(out[1]), 2.0f);
    EXPECT_NEAR(f16_to_f32(out[16]), p0 * 1 + p1 * 3, 1e-3);  // 1.5379
    EXPECT_NEAR(f16_to_f32(out[17]), p0 * 2 + p1 * 4, 1e-3);  // 2.5379
    EXPECT_EQ(out[2], 0);
  }
}

TEST_F(HostKvAttentionTest, OptLikeDecodeRaggedPast) {
  check_all({"mha d64", 4, 4, 64, 5, 160, {{3, 150, 1}, {0, 37, 1}, {4, 1, 1}, {1, 100, 1}}, {}});
}

TEST_F(HostKvAttentionTest, OptLikeHeadDim128MultiTokenSteps) {
  check_all({"mha d128", 3, 3, 128, 4, 64, {{2, 0, 9}, {0, 20, 3}, {3, 41, 1}}, {}});
}

TEST_F(HostKvAttentionTest, GroupedQueryDecodeAndPrefill) {
  check_all({"gqa 8/2 d128", 8, 2, 128, 3, 96, {{1, 70, 1}, {0, 0, 12}, {2, 33, 2}}, {}});
  check_all({"gqa 4/1 d64", 4, 1, 64, 2, 80, {{1, 65, 1}, {0, 17, 4}}, {}});
}

TEST_F(HostKvAttentionTest, MoreThan16HeadsInBatchesOf16) {
  check_all({"mha 20 heads", 20, 20, 64, 2, 48, {{1, 40, 1}, {0, 11, 2}}, {}});
  check_all({"gqa 24/3", 24, 3, 64, 2, 48, {{0, 33, 1}, {1, 6, 3}}, {}});
}

TEST_F(HostKvAttentionTest, Int4HeadDim128HeadBatchesAndGroupings) {
  // The int4 kernel for head_dim 128 works on query heads in halves of 8 whose groups it gathers
  // from the rows: more than 16 heads, a partial last batch, and kv heads that straddle halves.
  check_all({"mha 20 heads d128", 20, 20, 128, 2, 40, {{1, 37, 1}, {0, 5, 2}}, {}});
  check_all({"gqa 24/3 d128", 24, 3, 128, 2, 48, {{0, 33, 1}, {1, 6, 3}}, {}});
  check_all({"gqa 12/6 d128", 12, 6, 128, 2, 40, {{1, 30, 1}, {0, 17, 2}}, {}});
  check_all({"gqa 40/8 d128 window 9", 40, 8, 128, 2, 48, {{0, 40, 1}, {1, 3, 2}}, 9});
}

TEST_F(HostKvAttentionTest, Int4HeadDim128UnitsOfGroupedHeads) {
  // Grouped heads in units of 8 / U query heads of one kv head (G = 2, 4 or a multiple of 8),
  // scored two units at a time: several units per kv head (G 16), more than 8 kv heads (the
  // scales are read 8 kv heads at a time), an odd number of units.
  check_all({"gqa 32/2 d128", 32, 2, 128, 2, 40, {{1, 37, 1}, {0, 6, 2}}, {}});
  check_all({"gqa 40/10 d128", 40, 10, 128, 2, 40, {{0, 35, 1}, {1, 9, 2}}, {}});
  check_all({"gqa 18/9 d128", 18, 9, 128, 2, 40, {{1, 33, 1}, {0, 4, 3}}, {}});
  check_all({"gqa 72/9 d128", 72, 9, 128, 1, 40, {{0, 38, 1}}, {}});
}

TEST_F(HostKvAttentionTest, SlidingWindow) {
  check_all({"window 20", 4, 2, 64, 3, 128, {{0, 100, 1}, {2, 5, 4}, {1, 30, 3}}, 20});
  check_all({"window 1", 2, 2, 64, 1, 16, {{0, 9, 2}}, 1});
}

TEST_F(HostKvAttentionTest, HeadDimNotAMultipleOf16UsesThePortableKernel) {
  check_all({"d 40", 4, 2, 40, 2, 32, {{0, 10, 2}, {1, 3, 1}}, {}});
}

TEST_F(HostKvAttentionTest, KernelsAgreeOnALargeDecode) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU; the portable kernel is the only one";
  // 12 sequences of 200..300 positions, GQA 16/4, d 128: both kernels, default tuning.
  Case c{"large", 16, 4, 128, 12, 320, {}, {}};
  for (int32_t s = 0; s < 12; ++s) c.seqs.push_back({s, 200 + 9 * s, 1});
  for (bool int4 : {false, true}) {
    std::vector<float> portable, avx, ref;
    run(c, int4, {true, 0, 0}, &portable, &ref);
    run(c, int4, {false, 0, 0}, &avx, &ref);
    // Both round the same fp32 value (up to fp32 noise) to fp16: at most one ulp apart.
    int64_t differ = 0;
    for (size_t i = 0; i < avx.size(); ++i) {
      const double ulp = std::ldexp(1.0, std::ilogb(std::max(std::abs(ref[i]), 1.2e-4f)) - 10);
      ASSERT_LE(std::abs(double{avx[i]} - portable[i]), ulp * 1.01) << i;
      differ += avx[i] != portable[i];
    }
    EXPECT_LT(differ, static_cast<int64_t>(avx.size()) / 20);
    expect_matches(avx, ref, int4 ? "avx512 int4" : "avx512 fp16");
  }
}

TEST(HostKvKernel, DispatchFollowsTheCpu) {
#if defined(__x86_64__)
  const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") &&
                   __builtin_cpu_supports("fma");
  EXPECT_EQ(std::string(host_kv_kernel()), cpu ? "avx512" : "portable");
  EXPECT_NE(detail::host_kv_avx512_kernel(), nullptr);
#else
  EXPECT_EQ(std::string(host_kv_kernel()), "portable");
#endif
}

}  // namespace
}  // namespace strata::compute
