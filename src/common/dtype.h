// Element types strata stores and computes with, and scalar conversions between them.
// Conversions are round-to-nearest-even; NaN stays NaN. Pure functions, thread safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace strata {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);            // "F32", "F16", "BF16", "I32" (safetensors spelling)
std::optional<DType> dtype_from_name(std::string_view name);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of `src` (of type `from`) to float.
void convert_to_f32(DType from, const void* src, float* dst, size_t n);
// Converts n floats to `to` (F32, F16 or BF16).
void convert_from_f32(DType to, const float* src, void* dst, size_t n);

}  // namespace strata
