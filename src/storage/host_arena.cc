#include "storage/host_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/units.h"
#include "storage/topology.h"

namespace strata::storage {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

class MlockPinner final : public HostPinner {
 public:
  std::string_view name() const override { return "mlock"; }
  MemoryKind pinned_kind() const override { return MemoryKind::kHost; }
  Status pin(void* addr, size_t bytes) override {
    if (::mlock(addr, bytes) != 0) {
      const int err = errno;
      return Status(StatusCode::kOutOfMemory,
                    "mlock of " + format_bytes(bytes) + ": " + std::strerror(err) +
                        (err == ENOMEM || err == EPERM
                             ? " (raise the locked-memory limit: ulimit -l, or LimitMEMLOCK)"
                             : ""),
                    err);
    }
    return Status::ok();
  }
  void unpin(void* addr, size_t bytes) override { ::munlock(addr, bytes); }
};

}  // namespace

std::unique_ptr<HostPinner> make_mlock_pinner() { return std::make_unique<MlockPinner>(); }

Result<std::unique_ptr<HostArena>> HostArena::create(const HostArenaOptions& options, Logger& log) {
  if (options.bytes == 0) return invalid_argument("a host arena needs a size above 0 bytes");
  std::unique_ptr<HostArena> arena(new HostArena());
  arena->capacity_ = (options.bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(nullptr, arena->capacity_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (p == MAP_FAILED) {
    return Status(StatusCode::kOutOfMemory,
                  "cannot map a " + format_bytes(arena->capacity_) +
                      " host arena: " + std::strerror(errno),
                  errno);
  }
  arena->base_ = static_cast<std::byte*>(p);
  ::madvise(p, arena->capacity_, MADV_HUGEPAGE);
  if (options.numa_node >= 0) {
    Status s = bind_memory_to_numa_node(p, arena->capacity_, options.numa_node);
    if (s.is_ok()) {
      arena->bound_ = true;
      arena->numa_node_ = options.numa_node;
    } else {
      log.warn("host arena: " + s.message() + "; its pages go where the kernel puts them");
    }
  }
  if (options.prefault) std::memset(p, 0, arena->capacity_);
  if (options.pinner != nullptr) {
    Status s = options.pinner->pin(p, arena->capacity_);
    if (s.is_ok()) {
      arena->pinner_ = options.pinner;
      arena->pinned_ = true;
      arena->kind_ = options.pinner->pinned_kind();
    } else {
      log.warn("host arena: " + std::string(options.pinner->name()) + " pinning failed: " +
               s.message() + "; using pageable memory (host-device copies will be slower)");
    }
  }
  return arena;
}

HostArena::~HostArena() {
  if (base_ == nullptr) return;
  if (pinned_) pinner_->unpin(base_, capacity_);
  ::munmap(base_, capacity_);
}

Result<std::span<std::byte>> HostArena::allocate(size_t bytes, size_t align) {
  STRATA_CHECK(align > 0 && (align & (align - 1)) == 0, "host arena: alignment must be a power of two");
  std::lock_guard<std::mutex> lock(mu_);
  const size_t start = (used_ + align - 1) / align * align;
  const size_t size = (bytes + 4095) / 4096 * 4096;
  if (start > capacity_ || size > capacity_ - start) {
    return out_of_memory("host arena: " + format_bytes(bytes) + " does not fit (" +
                         format_bytes(capacity_ - std::min(start, capacity_)) + " free of " +
                         format_bytes(capacity_) + ")");
  }
  used_ = start + size;
  return std::span<std::byte>(base_ + start, bytes);
}

void HostArena::reset() {
  std::lock_guard<std::mutex> lock(mu_);
  used_ = 0;
}

size_t HostArena::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

}  // namespace strata::storage
