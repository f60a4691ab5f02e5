// IoBackend: how strata moves bytes between files and host memory. A backend runs single
// attempts (IoOp) that may complete short; run_io() (io_request.h) drives whole transfers on top.
// Implementations: io_uring (io_uring_backend.cc, the only file that includes liburing), a pool
// of pread/pwrite threads (thread_io_backend.cc), and a fault-injecting wrapper for tests.
// A backend is driven by one thread at a time (submit/wait); it owns no file descriptors.
// Units: offsets and lengths in bytes; files opened with O_DIRECT need offsets, lengths and buffer
// addresses that are multiples of kIoAlignment.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/log.h"
#include "common/status.h"

namespace strata::storage {

inline constexpr size_t kIoAlignment = 4096;
// Largest single op, in bytes (a transfer larger than this is split by run_io).
inline constexpr uint64_t kMaxIoOpBytes = uint64_t{1} << 30;

inline constexpr uint64_t align_up(uint64_t n, uint64_t a = kIoAlignment) {
  return (n + a - 1) / a * a;
}

enum class IoOpKind : uint8_t { kRead, kWrite };

// One attempt at a transfer, as the kernel sees it.
struct IoOp {
  IoOpKind kind = IoOpKind::kRead;
  int fd = -1;
  uint64_t offset = 0;
  void* buf = nullptr;
  uint32_t length = 0;
  int buf_index = -1;  // index of a registered buffer containing [buf, buf + length), or -1
  uint64_t tag = 0;    // returned unchanged in the completion
};

struct IoCompletion {
  uint64_t tag = 0;
  int64_t result = 0;  // bytes transferred (>= 0), or -errno
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  virtual std::string_view name() const = 0;
  // Most ops in flight at once; submit() beyond it is a caller bug.
  virtual int queue_depth() const = 0;

  // Queues one op; the buffer must stay valid until its completion is returned by wait().
  // An error means the backend itself failed (not the op): no completion will come for it.
  virtual Status submit(const IoOp& op) = 0;
  // Starts every queued op, then waits until at least `min_complete` completions are available
  // (min_complete <= ops in flight) and moves up to out.size() of them into `out`. Returns how
  // many it moved; min_complete == 0 does not block.
  virtual Result<int> wait(int min_complete, std::span<IoCompletion> out) = 0;

  // Registers buffers for fixed-buffer I/O (ops then name them by buf_index). Backends that
  // gain nothing from it return kUnsupported; callers then use buf_index = -1.
  virtual Status register_buffers(std::span<const iovec> buffers);
  virtual void unregister_buffers() {}

  // open(2) through the backend, so tests can refuse flags (O_DIRECT) per path. Returns the fd.
  virtual Result<int> open_file(const std::filesystem::path& path, int flags, mode_t mode);
};

enum class IoBackendKind { kAuto, kIoUring, kThreads };

struct IoBackendOptions {
  IoBackendKind kind = IoBackendKind::kAuto;
  int queue_depth = 64;
};

// io_uring with a ring of `queue_depth` entries; kUnsupported (with the kernel's reason) when
// the kernel or a seccomp policy refuses io_uring.
Result<std::unique_ptr<IoBackend>> make_io_uring_backend(int queue_depth);
// A pool of `threads` threads running pread/pwrite; queue_depth() == threads.
std::unique_ptr<IoBackend> make_thread_io_backend(int threads);

// kAuto: io_uring, or the thread backend with a warning saying why io_uring could not be used.
// kIoUring: io_uring or an error. kThreads: the thread backend.
Result<std::unique_ptr<IoBackend>> make_io_backend(const IoBackendOptions& options, Logger& log);

std::string_view io_backend_kind_name(IoBackendKind kind);  // "auto", "io_uring", "threads"

}  // namespace strata::storage
