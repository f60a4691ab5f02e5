#include "compute/int4.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace strata::compute {

size_t int4_blob_bytes(int64_t rows, int64_t cols) {
  const size_t groups = static_cast<size_t>(rows) * static_cast<size_t>(cols / kInt4GroupSize);
  return static_cast<size_t>(rows) * static_cast<size_t>(cols) / 2 + 2 * groups * sizeof(uint16_t);
}

bool int4_eligible(const Shape& shape) {
  return shape.size() == 2 && shape[0] > 0 && shape[1] > 0 && shape[1] % kInt4GroupSize == 0;
}

Result<Int4View> int4_view(std::span<const std::byte> blob, const Shape& shape) {
  if (!int4_eligible(shape)) {
    return invalid_argument("int4-g64: shape " + shape_string(shape) +
                            " is not [rows, cols] with cols a multiple of 64");
  }
  Int4View v;
  v.rows = shape[0];
  v.cols = shape[1];
  const size_t want = int4_blob_bytes(v.rows, v.cols);
  if (blob.size() != want) {
    return corrupt("int4-g64: a " + shape_string(shape) + " tensor takes " + std::to_string(want) +
                   " bytes, got " + std::to_string(blob.size()));
  }
  const auto* base = reinterpret_cast<const uint8_t*>(blob.data());
  const size_t code_bytes = static_cast<size_t>(v.rows * v.cols / 2);
  const size_t groups = static_cast<size_t>(v.rows * (v.cols / kInt4GroupSize));
  v.codes = base;
  v.scales = reinterpret_cast<const uint16_t*>(base + code_bytes);
  v.mins = reinterpret_cast<const uint16_t*>(base + code_bytes + groups * sizeof(uint16_t));
  return v;
}

Status quantise_int4(const Tensor& w, std::span<std::byte> blob) {
  if (!w.defined() || w.memory() == MemoryKind::kGpu) {
    return invalid_argument("int4-g64: quantise needs a host tensor");
  }
  if (!int4_eligible(w.shape())) {
    return invalid_argument("int4-g64: shape " + shape_string(w.shape()) +
                            " is not [rows, cols] with cols a multiple of 64");
  }
  if (w.dtype() == DType::kI32) return invalid_argument("int4-g64: cannot quantise an I32 tensor");
  const int64_t rows = w.dim(0), cols = w.dim(1), groups_per_row = cols / kInt4GroupSize;
  if (blob.size() != int4_blob_bytes(rows, cols)) {
    return invalid_argument("int4-g64: output blob has " + std::to_string(blob.size()) +
                            " bytes, a " + shape_string(w.shape()) + " tensor needs " +
                            std::to_string(int4_blob_bytes(rows, cols)));
  }
  auto* codes = reinterpret_cast<uint8_t*>(blob.data());
  const size_t code_bytes = static_cast<size_t>(rows * cols / 2);
  const size_t groups = static_cast<size_t>(rows * groups_per_row);
  std::vector<uint16_t> scales(groups), mins(groups);
  std::vector<float> row(static_cast<size_t>(cols));
  const size_t elem = dtype_size(w.dtype());
  for (int64_t r = 0; r < rows; ++r) {
    convert_to_f32(w.dtype(), static_cast<const char*>(w.raw()) + r * cols * elem, row.data(),
                   static_cast<size_t>(cols));
    for (int64_t g = 0; g < groups_per_row; ++g) {
      const float* x = row.data() + g * kInt4GroupSize;
      float lo = x[0], hi = x[0];
      for (int64_t i = 0; i < kInt4GroupSize; ++i) {
        if (!std::isfinite(x[i])) {
          return invalid_argument("int4-g64: non-finite value " + std::to_string(x[i]) +
                                  " at row " + std::to_string(r) + ", column " +
                                  std::to_string(g * kInt4GroupSize + i));
        }
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
      }
      const uint16_t min_h = f32_to_f16(lo);
      const uint16_t scale_h = f32_to_f16((hi - lo) / 15.0f);
      const float mn = f16_to_f32(min_h), scale = f16_to_f32(scale_h);
      const size_t gi = static_cast<size_t>(r * groups_per_row + g);
      scales[gi] = scale_h;
      mins[gi] = min_h;
      uint8_t* out = codes + (r * cols + g * kInt4GroupSize) / 2;
      for (int64_t i = 0; i < kInt4GroupSize; i += 2) {
        uint8_t q[2];
        for (int j = 0; j < 2; ++j) {
          float v = scale > 0.0f ? std::nearbyint((x[i + j] - mn) / scale) : 0.0f;
          q[j] = static_cast<uint8_t>(std::clamp(v, 0.0f, 15.0f));
        }
        out[i / 2] = static_cast<uint8_t>(q[0] | (q[1] << 4));
      }
    }
  }
  std::memcpy(codes + code_bytes, scales.data(), groups * sizeof(uint16_t));
  std::memcpy(codes + code_bytes + groups * sizeof(uint16_t), mins.data(),
              groups * sizeof(uint16_t));
  return Status::ok();
}

Tensor dequantise_int4(const Int4View& q) {
  STRATA_CHECK(q.codes != nullptr && q.rows > 0 && q.cols % kInt4GroupSize == 0,
               "dequantise_int4: view not made by int4_view");
  Tensor out = Tensor::host(DType::kF32, {q.rows, q.cols});
  float* y = out.data<float>();
  const int64_t groups_per_row = q.cols / kInt4GroupSize;
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t g = 0; g < groups_per_row; ++g) {
      const size_t gi = static_cast<size_t>(r * groups_per_row + g);
      // The group's scale and min in fp32; each value is one rounded product, one rounded sum.
      const float scale = f16_to_f32(q.scales[gi]);
      const float mn = f16_to_f32(q.mins[gi]);
      const int64_t base = r * q.cols + g * kInt4GroupSize;
      for (int64_t i = 0; i < kInt4GroupSize; ++i) {
        const uint8_t byte = q.codes[(base + i) / 2];
        const int code = (i % 2 == 0) ? (byte & 0x0f) : (byte >> 4);
        const float prod = static_cast<float>(code) * scale;
        y[base + i] = prod + mn;
      }
    }
  }
  return out;
}

}  // namespace strata::compute
