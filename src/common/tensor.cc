#include "common/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

namespace strata {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Result<uint64_t> checked_numel(const Shape& s, const std::string& who) {
  uint64_t elems = 1;
  for (int64_t d : s) {
    if (d < 0) return invalid_argument(who + ": negative dimension in shape " + shape_string(s));
    if (d != 0 && elems > std::numeric_limits<uint64_t>::max() / 64 / static_cast<uint64_t>(d))
      return out_of_memory(who + ": tensor of shape " + shape_string(s) + " is too large");
    elems *= static_cast<uint64_t>(d);
  }
  return elems;
}

std::string shape_string(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

Tensor Tensor::host(DType dtype, Shape shape) {
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  STRATA_CHECK(p != nullptr, "host allocation of " + std::to_string(bytes) + " bytes failed");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  std::shared_ptr<void> owner(p, [](void* q) { std::free(q); });
  return wrap(p, dtype, std::move(shape), MemoryKind::kHost, std::move(owner));
}

Tensor Tensor::wrap(void* data, DType dtype, Shape shape, MemoryKind kind,
                    std::shared_ptr<void> owner) {
  Tensor t;
  t.data_ = data;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.memory_ = kind;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  STRATA_CHECK(shape_numel(shape) == numel(),
               "reshape " + shape_string(shape_) + " to " + shape_string(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  STRATA_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "slice_rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                   shape_string(shape_));
  Tensor t = *this;
  size_t row_bytes = shape_[0] == 0 ? 0 : bytes() / static_cast<size_t>(shape_[0]);
  t.data_ = static_cast<char*>(data_) + row_bytes * static_cast<size_t>(begin);
  t.shape_[0] = end - begin;
  return t;
}

Tensor to_f32(const Tensor& t) {
  STRATA_CHECK(t.memory() != MemoryKind::kGpu, "to_f32 needs a host tensor");
  Tensor out = Tensor::host(DType::kF32, t.shape());
  convert_to_f32(t.dtype(), t.raw(), out.data<float>(), static_cast<size_t>(t.numel()));
  return out;
}

}  // namespace strata
