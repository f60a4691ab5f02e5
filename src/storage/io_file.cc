#include "storage/io_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "common/check.h"

namespace strata::storage {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

int access_flags(FileAccess access) {
  switch (access) {
    case FileAccess::kRead: return O_RDONLY;
    case FileAccess::kCreate: return O_WRONLY | O_CREAT | O_TRUNC;
    case FileAccess::kReadWrite: return O_RDWR | O_CREAT;
  }
  return O_RDONLY;
}

bool aligned(uint64_t v) { return v % kIoAlignment == 0; }

}  // namespace

Status IoBackend::register_buffers(std::span<const iovec>) {
  return unsupported(std::string(name()) + " backend has no registered buffers");
}

Result<int> IoBackend::open_file(const std::filesystem::path& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Status(StatusCode::kIoError, "open: " + errno_text(errno), errno);
  return fd;
}

Result<std::unique_ptr<IoFile>> IoFile::open(IoBackend& io, const std::filesystem::path& path,
                                             FileAccess access, bool direct, Logger& log) {
  const int flags = access_flags(access);
  auto fail = [&](const Status& s) -> Status {
    const int err = s.error_number();
    StatusCode code = err == ENOENT ? StatusCode::kNotFound : StatusCode::kIoError;
    return Status(code, path.string() + ": cannot open: " + errno_text(err), err);
  };
  if (direct) {
    Result<int> fd = io.open_file(path, flags | O_DIRECT, 0644);
    if (fd.is_ok()) return std::unique_ptr<IoFile>(new IoFile(path, *fd, true));
    if (fd.status().error_number() != EINVAL) return fail(fd.status());
    log.warn(path.string() +
             ": the filesystem refuses O_DIRECT (tmpfs does); falling back to buffered I/O "
             "through the page cache. Put the offload directory on an NVMe filesystem (ext4, "
             "xfs) for full speed.");
  }
  Result<int> fd = io.open_file(path, flags, 0644);
  if (!fd.is_ok()) return fail(fd.status());
  return std::unique_ptr<IoFile>(new IoFile(path, *fd, false));
}

IoFile::~IoFile() {
  if (fd_ >= 0) ::close(fd_);
}

Result<uint64_t> IoFile::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return io_error(path_.string() + ": fstat: " + errno_text(errno), errno);
  }
  return static_cast<uint64_t>(st.st_size);
}

Status IoFile::sync() const {
  if (::fdatasync(fd_) != 0) {
    const int err = errno;
    return io_error(path_.string() + ": fdatasync: " + errno_text(err) +
                        (err == ENOSPC ? " (the disk is full: free space or choose another "
                                         "directory)"
                                       : ""),
                    err);
  }
  return Status::ok();
}

Status IoFile::truncate(uint64_t bytes) const {
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0) {
    return io_error(path_.string() + ": ftruncate to " + std::to_string(bytes) +
                        " bytes: " + errno_text(errno),
                    errno);
  }
  return Status::ok();
}

namespace {

// An op in flight: which request, and the part of it this op covers.
struct Slot {
  size_t request = 0;
  uint64_t offset = 0;  // file offset of this op
  char* buf = nullptr;
  uint64_t length = 0;
  int again = 0;
  bool busy = false;
};

Status op_error(const IoRequest& r, uint64_t offset, uint64_t length, int err) {
  const char* verb = r.kind == IoOpKind::kRead ? "reading" : "writing";
  std::string msg = r.file->path().string() + ": " + verb + " " + r.what + " at offset " +
                    std::to_string(offset) + " (" + std::to_string(length) +
                    " bytes): " + errno_text(err);
  if (err == ENOSPC) msg += " (the disk is full: free space or choose another directory)";
  if (err == EINVAL && r.file->direct()) {
    msg += " (O_DIRECT needs 4 KiB-aligned offsets, lengths and buffers)";
  }
  if (err == EIO) msg += " (the device reported an I/O error: check the drive and its kernel log)";
  return io_error(msg, err);
}

}  // namespace

Status run_io(IoBackend& io, std::span<const IoRequest> requests, IoStats* stats,
              const IoRunOptions& options) {
  IoStats local;
  IoStats& st = stats ? *stats : local;
  const uint64_t max_op = std::clamp<uint64_t>(options.max_op_bytes, kIoAlignment, kMaxIoOpBytes);
  for (const IoRequest& r : requests) {
    STRATA_CHECK(r.file != nullptr && r.file->fd() >= 0, "run_io: request without an open file");
    if (r.file->direct()) {
      STRATA_CHECK(aligned(r.offset) && aligned(r.length) &&
                       aligned(reinterpret_cast<uintptr_t>(r.buf)),
                   "run_io: O_DIRECT transfer of " + r.what + " in " + r.file->path().string() +
                       " is not 4 KiB aligned");
    }
  }
  const int depth = std::max(1, io.queue_depth());
  std::vector<Slot> slots(static_cast<size_t>(depth));
  std::vector<IoCompletion> done(static_cast<size_t>(depth));
  size_t next_request = 0;
  uint64_t next_offset = 0;  // progress within requests[next_request]
  int in_flight = 0;
  Status first_error;
  // A read that found the file's end: the lowest such place over every op that completes, so the
  // error names where the file ends whatever order the ops finish in.
  struct Truncation {
    size_t request = 0;
    uint64_t offset = 0, missing = 0;
  };
  std::optional<Truncation> truncation;
  bool truncated_first = false;  // first_error is the truncation
  auto ends_at = [&](size_t request, uint64_t offset, uint64_t missing) {
    if (!truncation || request < truncation->request ||
        (request == truncation->request && offset < truncation->offset))
      truncation = Truncation{request, offset, missing};
  };

  auto submit = [&](size_t slot_index) -> Status {
    Slot& s = slots[slot_index];
    const IoRequest& r = requests[s.request];
    IoOp op;
    op.kind = r.kind;
    op.fd = r.file->fd();
    op.offset = s.offset;
    op.buf = s.buf;
    op.length = static_cast<uint32_t>(s.length);
    op.buf_index = r.buf_index;
    op.tag = slot_index;
    Status status = io.submit(op);
    if (status.is_ok()) {
      s.busy = true;
      ++in_flight;
      ++st.ops;
    }
    return status;
  };

  while (true) {
    // Fill free slots with the next pieces of the requests.
    while (first_error.is_ok() && in_flight < depth && next_request < requests.size()) {
      const IoRequest& r = requests[next_request];
      if (next_offset >= r.length) {
        ++next_request;
        next_offset = 0;
        continue;
      }
      size_t free_slot = 0;
      while (slots[free_slot].busy) ++free_slot;
      Slot& s = slots[free_slot];
      s.request = next_request;
      s.offset = r.offset + next_offset;
      s.buf = static_cast<char*>(r.buf) + next_offset;
      s.length = std::min(max_op, r.length - next_offset);
      s.again = 0;
      next_offset += s.length;
      Status status = submit(free_slot);
      if (!status.is_ok()) first_error = status;
    }
    if (in_flight == 0) break;
    Result<int> n = io.wait(1, done);
    if (!n.is_ok()) {
      // The backend itself failed; the ops in flight are lost to it.
      return n.status().with_context(std::string(io.name()) + " backend");
    }
    for (int i = 0; i < *n; ++i) {
      const IoCompletion& c = done[static_cast<size_t>(i)];
      STRATA_CHECK(c.tag < slots.size() && slots[c.tag].busy, "run_io: unknown completion tag");
      Slot& s = slots[c.tag];
      s.busy = false;
      --in_flight;
      const IoRequest& r = requests[s.request];
      if (!first_error.is_ok()) {  // draining after a failure; a read may still show the file's end
        if (truncated_first && r.kind == IoOpKind::kRead && c.result >= 0 && static_cast<uint64_t>(c.result) < s.length)
          ends_at(s.request, s.offset + static_cast<uint64_t>(c.result), s.length - static_cast<uint64_t>(c.result));
        continue;
      }
      if (c.result == -EAGAIN || c.result == -EINTR) {
        if (++s.again > options.max_again_retries) {
          first_error = op_error(r, s.offset, s.length, static_cast<int>(-c.result));
          continue;
        }
        ++st.again_retries;
        std::this_thread::sleep_for(std::chrono::microseconds(50 << std::min(s.again, 10)));
        Status status = submit(c.tag);
        if (!status.is_ok()) first_error = status;
        continue;
      }
      if (c.result < 0) {
        first_error = op_error(r, s.offset, s.length, static_cast<int>(-c.result));
        continue;
      }
      const uint64_t got = static_cast<uint64_t>(c.result);
      if (got > s.length) {
        first_error = internal_error(std::string(io.name()) + " backend reported " +
                                     std::to_string(got) + " bytes for a " +
                                     std::to_string(s.length) + "-byte op");
        continue;
      }
      st.bytes += got;
      if (got == s.length) continue;
      if (got == 0) {
        if (r.kind == IoOpKind::kRead) {
          ends_at(s.request, s.offset, s.length);
          first_error = corrupt("the file is truncated");  // named below, at its lowest end
          truncated_first = true;
        } else {
          first_error = op_error(r, s.offset, s.length, ENOSPC);
        }
        continue;
      }
      // A short transfer: resubmit the rest.
      ++st.short_resubmits;
      s.offset += got;
      s.buf += got;
      s.length -= got;
      s.again = 0;
      Status status = submit(c.tag);
      if (!status.is_ok()) first_error = status;
    }
  }
  if (truncated_first) {
    const IoRequest& r = requests[truncation->request];
    return corrupt(r.file->path().string() + ": reading " + r.what + " at offset " +
                   std::to_string(truncation->offset) + ": the file ends there, " +
                   std::to_string(truncation->missing) + " bytes short (the file is truncated: recreate it)");
  }
  return first_error;
}

}  // namespace strata::storage
