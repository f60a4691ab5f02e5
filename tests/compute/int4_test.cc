// int4-g64 reference quantiser and dequantiser, against values solved by hand (fp16 roundings
// from Python's struct 'e' format, an IEEE binary16 implementation we did not write).
#include "compute/int4.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace strata::compute {
namespace {

Tensor rows_of(const std::vector<std::vector<float>>& rows) {
  Tensor t = Tensor::host(DType::kF32, {static_cast<int64_t>(rows.size()),
                                         static_cast<int64_t>(rows[0].size())});
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(t.data<float>() + r * rows[0].size(), rows[r].data(), rows[0].size() * 4);
  }
  return t;
}

struct Quantised {
  std::vector<std::byte> blob;
  Int4View view;
};

Quantised quantise(const Tensor& w) {
  Quantised q;
  q.blob.resize(int4_blob_bytes(w.dim(0), w.dim(1)));
  Status s = quantise_int4(w, q.blob);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  auto v = int4_view(q.blob, w.shape());
  EXPECT_TRUE(v.is_ok()) << v.status().to_string();
  q.view = *v;
  return q;
}

TEST(Int4, BlobSizeIsFourAndAHalfBitsPerElement) {
  // [2, 128]: 128 code bytes + 4 groups x (2-byte scale + 2-byte min) = 144 bytes.
  EXPECT_EQ(int4_blob_bytes(2, 128), 144u);
  EXPECT_EQ(int4_blob_bytes(4096, 4096) * 8, size_t{4096} * 4096 * 9 / 2);
  EXPECT_TRUE(int4_eligible({3, 64}));
  EXPECT_FALSE(int4_eligible({3, 96}));
  EXPECT_FALSE(int4_eligible({64}));
}

TEST(Int4, ExactGridRoundTripsAndPacksLowNibbleFirst) {
  // Values -1 + k/8, k = 0..15: min -1 (fp16 0xbc00), scale 1/8 (fp16 0x3000), codes k.
  std::vector<float> row(64);
  for (int i = 0; i < 64; ++i) row[i] = -1.0f + 0.125f * (i % 16);
  Tensor w = rows_of({row});
  Quantised q = quantise(w);
  EXPECT_EQ(q.view.mins[0], 0xbc00);
  EXPECT_EQ(q.view.scales[0], 0x3000);
  EXPECT_EQ(q.view.codes[0], 0x10);  // element 0 -> code 0 (low), element 1 -> code 1 (high)
  EXPECT_EQ(q.view.codes[7], 0xfe);  // elements 14, 15
  Tensor d = dequantise_int4(q.view);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(d.data<float>()[i], row[i]) << i;
}

TEST(Int4, RoundsWithTheFp16ScaleAndTiesToEven) {
  // Group 0: zeros except 0.05, 0.7, 0.25 and 1.5. min 0, scale = f16(1.5 / 15) = 0.0999755859375
  // (0x2e66). 0.05 / s = 0.50012 -> 1; 0.7 / s = 7.0017 -> 7; 0.25 / s = 2.5006 -> 3;
  // 1.5 / s = 15.0037 -> 15. Dequantised: q * s.
  std::vector<float> g0(64, 0.0f);
  g0[1] = 0.05f;
  g0[10] = 0.7f;
  g0[11] = 0.25f;
  g0[63] = 1.5f;
  // Group 1: the -1 + k/8 grid again, plus exact ties: -1 + 1/16 (0.5 -> 0) and -1 + 3/16
  // (1.5 -> 2).
  std::vector<float> g1(64);
  for (int i = 0; i < 64; ++i) g1[i] = -1.0f + 0.125f * (i % 16);
  g1[20] = -1.0f + 0.0625f;
  g1[21] = -1.0f + 3 * 0.0625f;
  std::vector<float> row(g0);
  row.insert(row.end(), g1.begin(), g1.end());
  Quantised q = quantise(rows_of({row}));
  EXPECT_EQ(q.view.scales[0], 0x2e66);
  EXPECT_EQ(q.view.mins[0], 0x0000);
  Tensor d = dequantise_int4(q.view);
  const float* y = d.data<float>();
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0999755859375f);
  EXPECT_EQ(y[10], 0.6998291015625f);
  EXPECT_EQ(y[11], 0.2999267578125f);
  EXPECT_EQ(y[63], 1.4996337890625f);
  EXPECT_EQ(y[64 + 20], -1.0f);     // tie 0.5 -> code 0
  EXPECT_EQ(y[64 + 21], -0.75f);    // tie 1.5 -> code 2
  EXPECT_EQ(y[64 + 15], 0.875f);    // code 15
}

TEST(Int4, ConstantGroupHasZeroScale) {
  Quantised q = quantise(rows_of({std::vector<float>(64, 3.0f)}));
  EXPECT_EQ(q.view.scales[0], 0);
  Tensor d = dequantise_int4(q.view);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(d.data<float>()[i], 3.0f);
}

TEST(Int4, GroupsRunAlongTheInputDimension) {
  // Row 0 small values, row 1 large: each row (and each 64-column group) has its own scale.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t rows = 3, cols = 256;
  Tensor w = Tensor::host(DType::kF32, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int64_t r = i / cols, g = (i % cols) / 64;
    w.data<float>()[i] = u(rng) * std::pow(10.0f, static_cast<float>(r + g) - 3.0f);
  }
  Quantised q = quantise(w);
  Tensor d = dequantise_int4(q.view);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int64_t gi = (i / cols) * (cols / 64) + (i % cols) / 64;
    const float scale = f16_to_f32(q.view.scales[gi]);
    // Within half a step, plus what fp16 rounding of min and scale can add (15 steps' worth).
    const float tol = 0.5f * scale + 16 * std::ldexp(std::fabs(scale), -10) +
                      std::ldexp(std::fabs(f16_to_f32(q.view.mins[gi])), -10);
    EXPECT_LE(std::fabs(d.data<float>()[i] - w.data<float>()[i]), tol) << "element " << i;
  }
}

TEST(Int4, Bf16InputQuantisesLikeItsF32Value) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  Tensor b = Tensor::host(DType::kBF16, {2, 64});
  Tensor f = Tensor::host(DType::kF32, {2, 64});
  for (int i = 0; i < 128; ++i) {
    b.data<uint16_t>()[i] = f32_to_bf16(u(rng));
    f.data<float>()[i] = bf16_to_f32(b.data<uint16_t>()[i]);
  }
  EXPECT_EQ(quantise(b).blob, quantise(f).blob);
}

TEST(Int4, RejectsBadInput) {
  std::vector<std::byte> blob(int4_blob_bytes(1, 64));
  Tensor odd = Tensor::host(DType::kF32, {2, 96});
  EXPECT_EQ(quantise_int4(odd, blob).code(), StatusCode::kInvalidArgument);
  Tensor nan = Tensor::host(DType::kF32, {1, 64});
  nan.data<float>()[37] = std::nanf("");
  Status s = quantise_int4(nan, blob);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("column 37"), std::string::npos) << s.message();
  auto v = int4_view(std::span<const std::byte>(blob).first(10), {1, 64});
  EXPECT_EQ(v.status().code(), StatusCode::kCorrupt);
}

}  // namespace
}  // namespace strata::compute
