// IoFile and run_io: whole transfers over an IoBackend. IoFile owns a file descriptor opened
// through the backend, with O_DIRECT where the filesystem allows it. run_io() splits requests
// into ops, keeps up to queue_depth() of them in flight, resubmits short transfers and -EAGAIN,
// and turns every failure into a Status naming the file, the offset and what was being moved.
// run_io is as thread safe as its backend (one caller at a time per backend). Units: bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "storage/io_backend.h"

namespace strata::storage {

enum class FileAccess {
  kRead,       // existing file, read only
  kCreate,     // create or truncate, write only
  kReadWrite,  // create if missing, keep contents
};

class IoFile {
 public:
  // Opens `path` through `io`. With `direct`, asks for O_DIRECT; when the filesystem refuses it
  // (EINVAL: tmpfs and some network filesystems), reopens without it and logs a warning, so
  // transfers still work, through the page cache.
  static Result<std::unique_ptr<IoFile>> open(IoBackend& io, const std::filesystem::path& path,
                                              FileAccess access, bool direct, Logger& log);
  ~IoFile();
  IoFile(const IoFile&) = delete;
  IoFile& operator=(const IoFile&) = delete;

  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  bool direct() const { return direct_; }

  Result<uint64_t> size() const;
  Status sync() const;  // fdatasync: written data is on the device when this returns ok
  Status truncate(uint64_t bytes) const;

 private:
  IoFile(std::filesystem::path path, int fd, bool direct)
      : path_(std::move(path)), fd_(fd), direct_(direct) {}

  std::filesystem::path path_;
  int fd_ = -1;
  bool direct_ = false;
};

// One whole transfer. With an O_DIRECT file, offset, length and buf must be multiples of
// kIoAlignment (a broken invariant, checked).
struct IoRequest {
  IoOpKind kind = IoOpKind::kRead;
  const IoFile* file = nullptr;
  uint64_t offset = 0;
  void* buf = nullptr;
  uint64_t length = 0;
  int buf_index = -1;
  std::string what;  // what the bytes are, for messages, e.g. "tensor 'layers.0.q.weight'"
};

struct IoStats {
  uint64_t ops = 0;              // ops submitted, resubmissions included
  uint64_t short_resubmits = 0;  // ops resubmitted for the rest of a short transfer
  uint64_t again_retries = 0;    // ops resubmitted after -EAGAIN / -EINTR
  uint64_t bytes = 0;            // bytes transferred
};

struct IoRunOptions {
  uint64_t max_op_bytes = 4 << 20;  // requests are split into ops of at most this many bytes
  int max_again_retries = 64;       // per op, with a growing pause between tries
};

// Runs every request to completion. On the first failure it stops issuing ops, waits for those in
// flight, and returns: kIoError with the errno (EIO, ENOSPC, ...), or kCorrupt for a read that
// reaches end of file early (a truncated file). `stats` (optional) accumulates counters.
Status run_io(IoBackend& io, std::span<const IoRequest> requests, IoStats* stats = nullptr,
              const IoRunOptions& options = {});

}  // namespace strata::storage
