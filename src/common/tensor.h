// Tensor: a typed, shaped view of memory that knows which tier it lives in. Storage is shared
// (reference counted); views made with reshape()/slice_rows() keep their parent alive. Shapes are
// row-major, outermost first. Sizes: numel() counts elements, bytes() counts bytes.
// A Tensor is a value type; concurrent reads are safe, writes to the same memory are not.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/dtype.h"
#include "common/status.h"

namespace strata {

// Where the bytes of a tensor live.
enum class MemoryKind : uint8_t { kHost, kPinned, kGpu };

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
// Elements of `s` for an allocator: kInvalidArgument for a negative dimension, kOutOfMemory when
// the size (up to 64 bytes an element) would overflow. `who` prefixes the message.
Result<uint64_t> checked_numel(const Shape& s, const std::string& who);
std::string shape_string(const Shape& s);  // "[2, 3, 4]"

class Tensor {
 public:
  Tensor() = default;

  // Allocates zero-filled host memory, 64-byte aligned.
  static Tensor host(DType dtype, Shape shape);
  // Wraps memory owned by `owner` (which may be null for borrowed memory that outlives the view).
  static Tensor wrap(void* data, DType dtype, Shape shape, MemoryKind kind,
                     std::shared_ptr<void> owner);

  bool defined() const { return data_ != nullptr; }
  DType dtype() const { return dtype_; }
  MemoryKind memory() const { return memory_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t numel() const { return shape_numel(shape_); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  void* raw() const { return data_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }

  // Same memory, new shape with the same element count.
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the outermost dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  MemoryKind memory_ = MemoryKind::kHost;
  std::shared_ptr<void> owner_;
};

// Host copy of `t` converted to F32 (t must be in host memory).
Tensor to_f32(const Tensor& t);

}  // namespace strata
