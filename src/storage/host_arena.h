// Host memory for the CPU tier and for staging transfers: one large block, bound to a NUMA node
// (the one nearest the GPU) and pinned, carved into 4 KiB-aligned pieces by a bump allocator.
// Pinning goes through HostPinner so storage needs no CUDA: src/cuda implements it with
// cudaHostRegister; without CUDA the mlock pinner keeps pages resident. The arena owns its block
// and unpins/frees it on destruction; allocate() and reset() are thread safe. Units: bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>

#include "common/log.h"
#include "common/status.h"
#include "common/tensor.h"

namespace strata::storage {

// Makes host memory page-locked (and, for a GPU pinner, DMA-able by the device).
class HostPinner {
 public:
  virtual ~HostPinner() = default;
  virtual std::string_view name() const = 0;
  // The memory kind pinned pages become (kPinned for a GPU pinner, kHost for mlock).
  virtual MemoryKind pinned_kind() const = 0;
  virtual Status pin(void* addr, size_t bytes) = 0;
  virtual void unpin(void* addr, size_t bytes) = 0;
};

// mlock(2)/munlock(2): pages stay resident, but no device registration.
std::unique_ptr<HostPinner> make_mlock_pinner();

struct HostArenaOptions {
  uint64_t bytes = 0;
  int numa_node = -1;            // OS index to bind to; -1: leave placement to the kernel
  HostPinner* pinner = nullptr;  // not owned; must outlive the arena. null: unpinned
  bool prefault = true;          // touch every page now (on the bound node), not on first use
};

class HostArena {
 public:
  // Maps the block, binds it, pins it. Binding and pinning failures are warnings (the arena
  // still works, unbound or unpinned); a failed mapping is kOutOfMemory.
  static Result<std::unique_ptr<HostArena>> create(const HostArenaOptions& options, Logger& log);
  ~HostArena();
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  // `bytes` rounded up to 4 KiB (or `align`, a power of two); kOutOfMemory when it does not fit.
  Result<std::span<std::byte>> allocate(size_t bytes, size_t align = 4096);
  // Forgets every allocation (their memory is reused by later ones).
  void reset();

  size_t capacity() const { return capacity_; }
  size_t used() const;
  bool pinned() const { return pinned_; }
  bool bound() const { return bound_; }
  int numa_node() const { return numa_node_; }
  // kPinned when the GPU pinner registered the block, else kHost.
  MemoryKind memory_kind() const { return kind_; }

 private:
  HostArena() = default;

  std::byte* base_ = nullptr;
  size_t capacity_ = 0;
  HostPinner* pinner_ = nullptr;
  bool pinned_ = false;
  bool bound_ = false;
  int numa_node_ = -1;
  MemoryKind kind_ = MemoryKind::kHost;
  mutable std::mutex mu_;
  size_t used_ = 0;
};

}  // namespace strata::storage
