#include "measure_disk.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "storage/aligned_buffer.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"

namespace strata::tools {

namespace {

using storage::IoOpKind;

// The largest op the engine's run_io() issues (IoRunOptions::max_op_bytes): a larger request is
// several ops in flight at once.
constexpr uint64_t kOpBytes = 4 << 20;
// Distinct buffers the ops in flight cycle through (their contents do not matter).
constexpr int kBuffers = 16;

// Sequential requests of `request` bytes, in ops of at most kOpBytes with up to the backend's
// queue depth in flight, wrapping at the end of the file, until `min_seconds` have passed and the
// queue has been filled four times over, or `max_seconds` have (then it stops at the end of a
// request and waits for the ops in flight). Returns seconds per request in the steady state: the
// time between completions once the queue is full and before it drains, per request.
Result<double> run_pass(storage::IoBackend& io, const storage::IoFile& file, IoOpKind kind,
                        uint64_t file_bytes, uint64_t request, double min_seconds,
                        double max_seconds, std::byte* buffers) {
  const uint64_t op_bytes = std::min(request, kOpBytes);
  const int depth = io.queue_depth();
  std::vector<storage::IoCompletion> done(static_cast<size_t>(depth));
  std::vector<double> completed_at;  // seconds since the start, one per op in completion order
  uint64_t offset = 0, issued = 0;
  int in_flight = 0, next_buffer = 0;
  bool stop = false;
  const auto t0 = Clock::now();
  while (true) {
    while (!stop && in_flight < depth) {
      storage::IoOp op;
      op.kind = kind;
      op.fd = file.fd();
      op.offset = offset;
      op.buf = buffers + static_cast<size_t>(next_buffer) * op_bytes;
      op.length = static_cast<uint32_t>(op_bytes);
      op.tag = offset;
      STRATA_RETURN_IF_ERROR(io.submit(op));
      next_buffer = (next_buffer + 1) % kBuffers;
      ++in_flight;
      ++issued;
      offset = (offset + op_bytes) % file_bytes;
      if (offset % request == 0) {
        const double t = seconds_since(t0);
        stop = t > max_seconds || (t > min_seconds && issued >= 4 * static_cast<uint64_t>(depth));
      }
    }
    if (in_flight == 0) break;
    STRATA_ASSIGN_OR_RETURN(int n, io.wait(1, done));
    const double now = seconds_since(t0);
    for (int i = 0; i < n; ++i) {
      const storage::IoCompletion& c = done[static_cast<size_t>(i)];
      if (c.result < 0)
        return io_error(file.path().string() + ": offset " + std::to_string(c.tag) +
                            ": disk test " + (kind == IoOpKind::kRead ? "read: " : "write: ") +
                            std::strerror(static_cast<int>(-c.result)),
                        static_cast<int>(-c.result));
      if (static_cast<uint64_t>(c.result) != op_bytes)
        return io_error(file.path().string() + ": offset " + std::to_string(c.tag) +
                            ": disk test moved " + std::to_string(c.result) + " of " +
                            std::to_string(op_bytes) + " bytes",
                        EIO);
      completed_at.push_back(now);
      --in_flight;
    }
  }
  const size_t n = completed_at.size();
  const size_t edge =
      std::min(static_cast<size_t>(depth), n / 4);  // the queue filling and draining
  const size_t a = edge, b = n - 1 - edge;
  const double per_op = b > a && completed_at[b] > completed_at[a]
                            ? (completed_at[b] - completed_at[a]) / static_cast<double>(b - a)
                            : seconds_since(t0) / static_cast<double>(n);
  return per_op * static_cast<double>(request / op_bytes);
}

Status check_options(const DiskRequestOptions& o, uint64_t file_bytes) {
  if (o.request_sizes.size() < 2 || o.queue_depth < 1 || o.repetitions < 1)
    return invalid_argument(
        "disk test: needs at least two request sizes, a queue depth and a repetition");
  for (uint64_t s : o.request_sizes)
    if (s == 0 || s % storage::kIoAlignment != 0 || (s > kOpBytes && s % kOpBytes != 0))
      return invalid_argument("disk test: request size " + std::to_string(s) +
                              " must be a positive multiple of 4 KiB (and of 4 MiB above it)");
  if (file_bytes == 0)
    return invalid_argument("disk test: the test file (" +
                            short_bytes(static_cast<double>(o.file_bytes)) +
                            ") must hold at least one request of the largest size");
  std::error_code ec;
  if (!std::filesystem::is_directory(o.dir, ec))
    return not_found(o.dir.string() +
                     ": not a directory (give --dir an existing directory on the offload disk)");
  struct statvfs vfs {};
  if (::statvfs(o.dir.c_str(), &vfs) == 0) {
    const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (avail < file_bytes + (uint64_t{64} << 20))
      return invalid_argument(o.dir.string() + ": " + short_bytes(static_cast<double>(avail)) +
                              " free; the disk test file needs " +
                              short_bytes(static_cast<double>(file_bytes)) +
                              " plus 64 MiB to spare: pass a smaller --disk-test-bytes");
  }
  return Status::ok();
}

std::string describe(const char* field, const planner::FixedPlusRate& f,
                     const std::vector<planner::TimedCall>& s) {
  char fit[96];
  std::snprintf(fit, sizeof fit, "%.1f us + bytes / %.2f GB/s", f.fixed_s * 1e6, f.rate / 1e9);
  return describe_fixed_plus_rate(field, fit, f, s);
}

}  // namespace

DiskRequestOptions disk_request_options(bool quick, const std::filesystem::path& dir,
                                        uint64_t file_bytes) {
  DiskRequestOptions o;
  o.dir = dir;
  o.file_bytes = file_bytes;
  if (!quick) {
    o.request_sizes = {64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20,
                       2 << 20,  4 << 20,   8 << 20,   16 << 20};
    o.repetitions = 2;
    o.min_seconds_per_pass = 0.3;
    o.max_seconds_per_pass = 3;
  }
  return o;
}

Result<DiskRequests> measure_disk_requests(const DiskRequestOptions& o, Logger& log,
                                           const ProgressFn& progress) {
  const uint64_t largest = *std::max_element(o.request_sizes.begin(), o.request_sizes.end());
  const uint64_t file_bytes = o.file_bytes / largest * largest;
  STRATA_RETURN_IF_ERROR(check_options(o, file_bytes));
  STRATA_ASSIGN_OR_RETURN(
      auto io, storage::make_io_backend({storage::IoBackendKind::kAuto, o.queue_depth}, log));
  const std::filesystem::path path =
      o.dir / ("strata-profile-disk-" + std::to_string(::getpid()) + ".dat");
  STRATA_ASSIGN_OR_RETURN(
      auto file, storage::IoFile::open(*io, path, storage::FileAccess::kReadWrite, true, log));
  struct Remove {
    std::filesystem::path p;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } remove{path};
  STRATA_ASSIGN_OR_RETURN(auto buffers,
                          storage::AlignedBuffer::allocate(kBuffers * std::min(largest, kOpBytes)));
  std::memset(buffers.data(), 0x5a, buffers.size());

  DiskRequests r;
  r.backend = std::string(io->name());
  r.direct = file->direct();
  const std::string what = "disk requests";
  const int total = static_cast<int>(o.request_sizes.size()) + 1;
  report_progress(progress, what, 0, total);
  // The file is written once whole before anything is timed: writes that extend a file cost more.
  std::vector<storage::IoRequest> fill;
  for (uint64_t off = 0; off < file_bytes; off += kOpBytes)
    fill.push_back({IoOpKind::kWrite, file.get(), off, buffers.data(),
                    std::min(kOpBytes, file_bytes - off), -1, "the disk test file"});
  STRATA_RETURN_IF_ERROR(storage::run_io(*io, fill));
  STRATA_RETURN_IF_ERROR(file->sync());
  report_progress(progress, what, 1, total);
  std::vector<uint64_t> sizes = o.request_sizes;
  std::sort(sizes.begin(), sizes.end());
  for (size_t i = 0; i < sizes.size(); ++i) {
    double best_write = 1e30, best_read = 1e30;
    for (int rep = 0; rep < o.repetitions; ++rep) {
      STRATA_ASSIGN_OR_RETURN(
          double w, run_pass(*io, *file, IoOpKind::kWrite, file_bytes, sizes[i],
                             o.min_seconds_per_pass, o.max_seconds_per_pass, buffers.data()));
      STRATA_RETURN_IF_ERROR(file->sync());
      STRATA_ASSIGN_OR_RETURN(
          double rd, run_pass(*io, *file, IoOpKind::kRead, file_bytes, sizes[i],
                              o.min_seconds_per_pass, o.max_seconds_per_pass, buffers.data()));
      best_write = std::min(best_write, w);
      best_read = std::min(best_read, rd);
    }
    r.write_samples.push_back({static_cast<double>(sizes[i]), best_write});
    r.read_samples.push_back({static_cast<double>(sizes[i]), best_read});
    report_progress(progress, what, static_cast<int>(i) + 2, total);
  }
  STRATA_ASSIGN_OR_RETURN(r.read,
                          planner::fit_fixed_plus_rate(r.read_samples, "disk.read_latency_us"));
  STRATA_ASSIGN_OR_RETURN(r.write,
                          planner::fit_fixed_plus_rate(r.write_samples, "disk.write_latency_us"));
  r.text =
      "disk requests in " + o.dir.string() + " (" + r.backend + ", queue depth " +
      std::to_string(io->queue_depth()) + ", ops of at most 4 MiB, " +
      (r.direct ? "O_DIRECT"
                : "buffered: the filesystem refused O_DIRECT, so these are page-cache figures") +
      ", " + short_bytes(static_cast<double>(file_bytes)) + " test file, time per request): " +
      describe("disk.read_latency_us / read_gbps", r.read, r.read_samples) + "; " +
      describe("disk.write_latency_us / write_gbps", r.write, r.write_samples);
  return r;
}

}  // namespace strata::tools
