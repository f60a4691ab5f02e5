// The int4-g64 append of the host KV cache: each kernel's quantise_groups (portable, and AVX-512
// where the CPU has it) against compute::quantise_int4 byte for byte, on random rows of several
// widths, every finite fp16 value, constant and all-zero groups, ties, subnormals and values at
// the fp16 limits; hand-solved codes for ties and zero signs; non-finite input reported at its
// index; and the append inside host_kv_attention equal for both kernels.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/backend.h"
#include "compute/host_kv.h"
#include "compute/host_kv_kernels.h"
#include "compute/int4.h"

namespace strata::compute {
namespace {

using detail::HostKvKernel;

std::vector<const HostKvKernel*> kernels() {
  std::vector<const HostKvKernel*> out{&detail::host_kv_portable_kernel()};
  if (std::string(host_kv_kernel()) == "avx512") out.push_back(detail::host_kv_avx512_kernel());
  return out;
}

// quantise_int4 of fp16 rows x [rows, cols].
std::vector<std::byte> reference(std::vector<uint16_t>& x, int64_t rows, int64_t cols) {
  Tensor t = Tensor::wrap(x.data(), DType::kF16, {rows, cols}, MemoryKind::kHost, nullptr);
  std::vector<std::byte> blob(int4_blob_bytes(rows, cols));
  const Status st = quantise_int4(t, blob);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  return blob;
}

// The kernel's quantise_groups over the whole matrix: codes, scales and mins of all rows are
// each contiguous, which is the quantise_int4 blob. Poisoned first, so unwritten bytes show.
std::vector<std::byte> quantise(const HostKvKernel& k, const std::vector<uint16_t>& x,
                                int64_t rows, int64_t cols) {
  std::vector<std::byte> blob(int4_blob_bytes(rows, cols), std::byte{0xa5});
  const size_t code_bytes = static_cast<size_t>(rows * cols / 2);
  const size_t groups = static_cast<size_t>(rows * cols / kInt4GroupSize);
  auto* base = reinterpret_cast<uint8_t*>(blob.data());
  const int64_t bad = k.quantise_groups(x.data(), static_cast<int64_t>(groups), base,
                                        reinterpret_cast<uint16_t*>(base + code_bytes),
                                        reinterpret_cast<uint16_t*>(base + code_bytes + 2 * groups));
  EXPECT_EQ(bad, -1) << k.name;
  return blob;
}

// The first index where two blobs differ, and what sits there, for a readable failure.
std::string first_difference(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "byte " + std::to_string(i) + ": " + std::to_string(int(a[i])) + " vs " +
             std::to_string(int(b[i]));
    }
  }
  return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
}

void expect_all_kernels_match(std::vector<uint16_t> x, int64_t rows, int64_t cols,
                              const std::string& what) {
  ASSERT_EQ(x.size(), static_cast<size_t>(rows * cols));
  const std::vector<std::byte> want = reference(x, rows, cols);
  for (const HostKvKernel* k : kernels()) {
    const std::vector<std::byte> got = quantise(*k, x, rows, cols);
    EXPECT_TRUE(got == want) << what << ", kernel " << k->name << ", " << first_difference(got, want);
  }
}

std::vector<uint16_t> random_f16(int64_t n, std::mt19937& gen, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (auto& h : out) h = f32_to_f16(dist(gen));
  return out;
}

bool finite_f16(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

TEST(HostKvAppendQuantise, RandomRowsOfSeveralWidths) {
  std::mt19937 gen(11);
  for (int64_t e : {64, 128, 1024, 7168}) {
    expect_all_kernels_match(random_f16(3 * e, gen, -1.0f, 1.0f), 3, e, "E " + std::to_string(e));
    expect_all_kernels_match(random_f16(2 * e, gen, -300.0f, 40.0f), 2, e,
                             "wide, E " + std::to_string(e));
    expect_all_kernels_match(random_f16(2 * e, gen, 0.001f, 0.002f), 2, e,
                             "narrow positive, E " + std::to_string(e));
  }
}

TEST(HostKvAppendQuantise, RandomBitPatternsAllExponents) {
  // Any finite fp16, subnormals and the largest values included, in every group.
  std::mt19937 gen(12);
  std::uniform_int_distribution<int> bits(0, 0xffff);
  for (int64_t e : {64, 1024, 7168}) {
    std::vector<uint16_t> x(static_cast<size_t>(4 * e));
    for (auto& h : x) {
      do h = static_cast<uint16_t>(bits(gen));
      while (!finite_f16(h));
    }
    expect_all_kernels_match(x, 4, e, "random bits, E " + std::to_string(e));
  }
}

TEST(HostKvAppendQuantise, EveryFiniteF16Value) {
  // The 63488 finite fp16 bit patterns are 62 rows of 1024: in order (narrow groups, subnormal
  // and tiny ranges whose scale rounds to 0 or to a subnormal) and shuffled.
  std::vector<uint16_t> x;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (finite_f16(static_cast<uint16_t>(h))) x.push_back(static_cast<uint16_t>(h));
  }
  ASSERT_EQ(x.size(), 62u * 1024u);
  expect_all_kernels_match(x, 62, 1024, "every finite value in order");
  std::mt19937 gen(13);
  std::shuffle(x.begin(), x.end(), gen);
  expect_all_kernels_match(x, 62, 1024, "every finite value shuffled");
}

TEST(HostKvAppendQuantise, ConstantZeroAndExtremeGroups) {
  const int64_t e = 1024;  // 16 groups
  std::mt19937 gen(14);
  std::vector<uint16_t> x = random_f16(e, gen, -2.0f, 2.0f);
  auto group = [&](int g) { return x.begin() + g * 64; };
  std::fill(group(0), group(1), f32_to_f16(0.75f));  // constant: scale 0
  std::fill(group(1), group(2), uint16_t{0x0000});   // +0
  std::fill(group(2), group(3), uint16_t{0x8000});   // -0
  for (int i = 0; i < 64; ++i) group(3)[i] = i % 2 ? 0x8000 : 0x0000;  // +0 first
  for (int i = 0; i < 64; ++i) group(4)[i] = i % 2 ? 0x0000 : 0x8000;  // -0 first
  // A minimum of zero, both signs present, after positive values.
  for (int i = 0; i < 64; ++i) group(5)[i] = f32_to_f16(0.5f + i / 64.0f);
  group(5)[7] = 0x0000;
  group(5)[9] = 0x8000;
  for (int i = 0; i < 64; ++i) group(6)[i] = f32_to_f16(0.5f + i / 64.0f);
  group(6)[3] = 0x8000;
  group(6)[40] = 0x0000;
  // The fp16 limits: the full range (scale 131008 / 15), all at the top, the top and a subnormal.
  for (int i = 0; i < 64; ++i) group(7)[i] = i % 3 == 0 ? 0x7bff : i % 3 == 1 ? 0xfbff : 0x3c00;
  std::fill(group(8), group(9), uint16_t{0x7bff});
  for (int i = 0; i < 64; ++i) group(9)[i] = i % 2 ? 0x7bff : 0x0001;
  // Subnormal ranges: scale rounds to 0 (range 2^-24), to a subnormal, and subnormals only.
  for (int i = 0; i < 64; ++i) group(10)[i] = static_cast<uint16_t>(i % 2);
  for (int i = 0; i < 64; ++i) group(11)[i] = static_cast<uint16_t>(i * 7);
  for (int i = 0; i < 64; ++i) group(12)[i] = static_cast<uint16_t>(0x8000 | (0x3ff - i * 5));
  // Just above the largest value that is constant in fp16: one ulp of range.
  std::fill(group(13), group(14), uint16_t{0x7bfe});
  group(13)[63] = 0x7bff;
  expect_all_kernels_match(x, 1, e, "constant, zero and extreme groups");

  // Hand-solved: a minimum of zero keeps the first zero's sign; all-zero groups have scale +0.
  for (const HostKvKernel* k : kernels()) {
    const std::vector<std::byte> blob = quantise(*k, x, 1, e);
    const auto* scales = reinterpret_cast<const uint16_t*>(blob.data() + e / 2);
    const auto* mins = scales + e / 64;
    EXPECT_EQ(scales[0], 0u) << k->name;
    EXPECT_EQ(mins[0], f32_to_f16(0.75f)) << k->name;
    EXPECT_EQ(mins[1], 0x0000u) << k->name;
    EXPECT_EQ(mins[2], 0x8000u) << k->name;
    EXPECT_EQ(mins[3], 0x0000u) << k->name;
    EXPECT_EQ(mins[4], 0x8000u) << k->name;
    EXPECT_EQ(mins[5], 0x0000u) << k->name;
    EXPECT_EQ(mins[6], 0x8000u) << k->name;
    for (int g = 1; g <= 4; ++g) EXPECT_EQ(scales[g], 0x0000u) << k->name << " group " << g;
    EXPECT_EQ(scales[10], 0x0000u) << k->name;  // 2^-24 / 15 rounds to 0 in fp16
  }
}

TEST(HostKvAppendQuantise, TiesRoundToEvenByHand) {
  // One group with min 0 and max 15: scale exactly 1, so x - min is the code before rounding;
  // ties go to the even code: 2.5 -> 2, 3.5 -> 4, 0.5 -> 0, 14.5 -> 14, 13.5 -> 14.
  std::vector<uint16_t> x(64, f32_to_f16(7.0f));
  const float vals[] = {0.0f, 15.0f, 2.5f, 3.5f, 0.5f, 14.5f, 13.5f, 1.25f};
  const int want[] = {0, 15, 2, 4, 0, 14, 14, 1};
  for (int i = 0; i < 8; ++i) x[static_cast<size_t>(i)] = f32_to_f16(vals[i]);
  expect_all_kernels_match(x, 1, 64, "ties");
  for (const HostKvKernel* k : kernels()) {
    const std::vector<std::byte> blob = quantise(*k, x, 1, 64);
    const auto* codes = reinterpret_cast<const uint8_t*>(blob.data());
    for (int i = 0; i < 8; ++i) {
      const int code = (codes[i / 2] >> (4 * (i % 2))) & 0xf;
      EXPECT_EQ(code, want[i]) << k->name << " element " << i;
    }
    EXPECT_EQ(codes[4], 7 | 7 << 4) << k->name;
    uint16_t scale;
    std::memcpy(&scale, blob.data() + 32, 2);
    EXPECT_EQ(scale, 0x3c00u) << k->name;  // 1.0
  }
}

TEST(HostKvAppendQuantise, NonFiniteReportsTheFirstIndex) {
  std::mt19937 gen(15);
  for (const HostKvKernel* k : kernels()) {
    for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e00}, uint16_t{0xfd01}}) {
      for (int64_t at : {int64_t{0}, int64_t{31}, int64_t{32}, int64_t{63}, int64_t{700}}) {
        std::vector<uint16_t> x = random_f16(1024, gen, -1.0f, 1.0f);
        x[static_cast<size_t>(at)] = bad;
        x[static_cast<size_t>(at) + 100] = 0x7c00;  // a later one is not the one reported
        std::vector<std::byte> blob(int4_blob_bytes(1, 1024));
        auto* base = reinterpret_cast<uint8_t*>(blob.data());
        EXPECT_EQ(k->quantise_groups(x.data(), 16, base, reinterpret_cast<uint16_t*>(base + 512),
                                     reinterpret_cast<uint16_t*>(base + 544)),
                  at)
            << k->name << " value " << bad;
        // The reference refuses the same rows.
        Tensor t = Tensor::wrap(x.data(), DType::kF16, {1, 1024}, MemoryKind::kHost, nullptr);
        EXPECT_FALSE(quantise_int4(t, blob).is_ok());
      }
    }
  }
}

TEST(HostKvAppendDeathTest, NonFiniteNamesRowPositionAndColumn) {
  HostKvShape sh{2, 8, 2, 64, true};
  std::vector<std::byte> k(sh.bytes_each()), v(sh.bytes_each());
  const HostKvView view{sh, k.data(), v.data()};
  std::vector<uint16_t> kn(3 * 128, 0x3c00), vn(3 * 128, 0x3c00);
  vn[128 + 70] = 0xfc00;  // -inf in the second row
  EXPECT_DEATH(host_kv_append(view, 1, 4, 3, kn.data(), vn.data()),
               "values, slot 1, positions from 4: int4-g64: non-finite value -inf at row 1 "
               "\\(position 5\\), column 70");
}

TEST(HostKvAppendQuantise, AttentionAppendsTheSameBytesWithEitherKernel) {
  // host_kv_attention appends before attending; forcing the portable kernel must not change
  // the cache, which must also be quantise_int4 of the new rows. E = 7168 as OPT-30B.
  HostKvShape sh{3, 4, 56, 128, true};
  const int64_t e = sh.row_elems(), qrow = 56 * 128;
  std::mt19937 gen(16);
  std::vector<uint16_t> q = random_f16(3 * qrow, gen, -1.0f, 1.0f);
  std::vector<uint16_t> kn = random_f16(3 * e, gen, -3.0f, 3.0f);
  std::vector<uint16_t> vn = random_f16(3 * e, gen, -1.0f, 1.0f);
  const std::vector<SeqSpan> seqs{{0, 0, 1, 0}, {2, 3, 1, 1}, {1, 1, 1, 2}};
  const AttentionParams params{0.1f, {}};
  ThreadPool pool(2);
  std::vector<std::vector<std::byte>> caches;
  for (bool portable : {true, false}) {
    std::vector<std::byte> k(sh.bytes_each()), v(sh.bytes_each());
    const HostKvView view{sh, k.data(), v.data()};
    std::vector<uint16_t> out(q.size());
    HostKvTuning tuning;
    tuning.force_portable = portable;
    host_kv_attention(pool, view, 56, q.data(), kn.data(), vn.data(), seqs, params, out.data(),
                      tuning);
    caches.push_back(k);
    caches.push_back(v);
  }
  EXPECT_TRUE(caches[0] == caches[2]);
  EXPECT_TRUE(caches[1] == caches[3]);
  // Row of sequence s (slot, past) = slot * 4 + past, against the reference of its new row.
  for (int which = 0; which < 2; ++which) {
    std::vector<uint16_t>& rows = which == 0 ? kn : vn;
    const std::vector<std::byte> want = reference(rows, 3, e);
    const std::vector<std::byte>& got = caches[static_cast<size_t>(which)];
    for (int64_t s = 0; s < 3; ++s) {
      const int64_t row = seqs[static_cast<size_t>(s)].slot * 4 + seqs[static_cast<size_t>(s)].past_len;
      EXPECT_EQ(std::memcmp(got.data() + sh.code_offset(row), want.data() + s * e / 2,
                            static_cast<size_t>(e / 2)),
                0);
      EXPECT_EQ(std::memcmp(got.data() + sh.scale_offset(row), want.data() + 3 * e / 2 + s * 224,
                            224),
                0);
      EXPECT_EQ(std::memcmp(got.data() + sh.min_offset(row),
                            want.data() + 3 * e / 2 + 3 * 224 + s * 224, 224),
                0);
    }
  }
}

}  // namespace
}  // namespace strata::compute
