// int4-g64: group-wise asymmetric 4-bit quantisation, the reference quantiser and dequantiser.
// A [rows, cols] weight is cut into groups of 64 consecutive elements along cols (the input
// dimension); each group keeps an fp16 scale and an fp16 minimum, and each element a 4-bit code q
// with value q * scale + min (4.5 bits per element). Pure functions, thread safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "common/tensor.h"

namespace strata::compute {

inline constexpr int64_t kInt4GroupSize = 64;

// The serialised form of one quantised [rows, cols] tensor, laid out back to back:
//   codes  [rows, cols / 2] bytes: element 2j in the low nibble, element 2j + 1 in the high nibble
//   scales [rows, cols / 64] fp16 (little-endian bit patterns)
//   mins   [rows, cols / 64] fp16
size_t int4_blob_bytes(int64_t rows, int64_t cols);

// A read-only view of a blob; pointers into memory the caller owns.
struct Int4View {
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  const uint16_t* mins = nullptr;
};

// True when `shape` can be quantised: rank 2 with cols a positive multiple of 64.
bool int4_eligible(const Shape& shape);

// Views `blob` as a quantised tensor of `shape`; kCorrupt when the size does not match.
Result<Int4View> int4_view(std::span<const std::byte> blob, const Shape& shape);

// Quantises a host F32/F16/BF16 tensor into `blob` (int4_blob_bytes(rows, cols) bytes). Per group:
// min = f16(min x), scale = f16((max x - min x) / 15), q = clamp(round((x - min) / scale), 0, 15)
// computed with the fp16-rounded min and scale, ties to even (q = 0 when the scale is 0).
// kInvalidArgument for an ineligible shape or a non-finite value (the message names the row and
// column).
Status quantise_int4(const Tensor& w, std::span<std::byte> blob);

// The reference dequantiser: a new host F32 tensor [rows, cols] with x = float(q) * scale + min,
// a product then a sum, each rounded to fp32 (no fused multiply-add).
Tensor dequantise_int4(const Int4View& q);

}  // namespace strata::compute
