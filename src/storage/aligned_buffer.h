// AlignedBuffer: an owned block of host memory aligned to kIoAlignment (4 KiB), its size rounded
// up to a multiple of it, zero filled: the form O_DIRECT transfers need. Move-only; not thread
// safe. size() is the usable byte count asked for; capacity() the rounded allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/status.h"

namespace strata::storage {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // kOutOfMemory when the allocation fails.
  static Result<AlignedBuffer> allocate(size_t bytes);

  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  std::span<std::byte> span() const { return {data_.get(), size_}; }
  // Shares ownership of the memory with others (e.g. a Tensor wrapping it).
  std::shared_ptr<std::byte> share() const { return data_; }

 private:
  std::shared_ptr<std::byte> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace strata::storage
