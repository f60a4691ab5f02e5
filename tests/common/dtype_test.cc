// Scalar dtype conversions: known fp16 and bf16 bit patterns, round-to-nearest-even, specials.

#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace strata {
namespace {

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kI32), 4u);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32})
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  EXPECT_EQ(dtype_name(DType::kBF16), "BF16");
  EXPECT_FALSE(dtype_from_name("F64").has_value());
  EXPECT_FALSE(dtype_from_name("f32").has_value());  // safetensors spelling is upper case
}

TEST(F16Test, KnownBitPatterns) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);               // largest finite
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);               // rounds up past 65504: inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);               // just below the halfway point
  EXPECT_EQ(f32_to_f16(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(f32_to_f16(1e-10f), 0x0000);  // underflows to zero
}

TEST(F16Test, RoundsToNearestEven) {
  // Halfway between 1.0 (0x3C00) and the next value (0x3C01): ties to the even 0x3C00.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // Halfway between 0x3C01 and 0x3C02: ties to the even 0x3C02.
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above halfway rounds up.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  // Subnormals: 2^-25 is halfway between 0 and 2^-24 (ties to 0); 3 * 2^-25 ties to 2 * 2^-24.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25) + std::ldexp(1.0f, -35)), 0x0001);
}

TEST(F16Test, ToF32) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7C00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  // Every finite half survives a round trip through float.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;  // inf and NaN
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(Bf16Test, KnownBitPatternsAndRounding) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
  // 1 + 2^-8 is halfway between 0x3F80 and 0x3F81: ties to even (0x3F80).
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808000)), 0x3F80);
  // 0x3F818000 is halfway between 0x3F81 and 0x3F82: ties to even (0x3F82).
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F818000)), 0x3F82);
  // Just above / below halfway.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808001)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F807FFF)), 0x3F80);
  // Rounding up carries into the exponent; the largest finite rounds to inf.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3FFFFFFF)), 0x4000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  // NaN stays NaN, including a NaN whose payload lies only in the low bits.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7F800001)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(ConvertTest, ArraysRoundTrip) {
  const std::vector<float> src = {0.0f, 1.0f, -1.5f, 1.0f / 3.0f, 1000.0f};
  std::vector<uint16_t> half(src.size()), brain(src.size());
  convert_from_f32(DType::kF16, src.data(), half.data(), src.size());
  convert_from_f32(DType::kBF16, src.data(), brain.data(), src.size());
  EXPECT_EQ(half[1], 0x3C00);
  EXPECT_EQ(half[3], 0x3555);
  EXPECT_EQ(brain[1], 0x3F80);
  std::vector<float> back(src.size());
  convert_to_f32(DType::kF16, half.data(), back.data(), src.size());
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], f16_to_f32(half[i]));
  convert_to_f32(DType::kBF16, brain.data(), back.data(), src.size());
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], bf16_to_f32(brain[i]));
  convert_to_f32(DType::kF32, src.data(), back.data(), src.size());
  EXPECT_EQ(back, src);
}

}  // namespace
}  // namespace strata
