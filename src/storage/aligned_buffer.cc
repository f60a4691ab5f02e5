#include "storage/aligned_buffer.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/units.h"
#include "storage/io_backend.h"

namespace strata::storage {

Result<AlignedBuffer> AlignedBuffer::allocate(size_t bytes) {
  AlignedBuffer b;
  b.size_ = bytes;
  b.capacity_ = static_cast<size_t>(align_up(std::max<size_t>(bytes, 1)));
  void* p = std::aligned_alloc(kIoAlignment, b.capacity_);
  if (p == nullptr) {
    return out_of_memory("cannot allocate a " + format_bytes(b.capacity_) + " I/O buffer");
  }
  std::memset(p, 0, b.capacity_);
  b.data_ = std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
  return b;
}

}  // namespace strata::storage
