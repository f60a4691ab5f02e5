#include "bench/drivers/io_bench.h"

#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

#include "common/units.h"
#include "storage/aligned_buffer.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"

namespace strata::bench {

using storage::AlignedBuffer;
using storage::FileAccess;
using storage::kIoAlignment;
using storage::kMaxIoOpBytes;
using storage::run_io;
using storage::IoBackend;
using storage::IoBackendKind;
using storage::IoBackendOptions;
using storage::IoCompletion;
using storage::IoOp;
using storage::IoFile;
using storage::IoOpKind;
using storage::IoRequest;
using storage::make_io_backend;
using storage::make_io_uring_backend;
using storage::make_thread_io_backend;
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void summarise(IoBenchResult& r) {
  std::vector<double> v = r.gbps;
  std::sort(v.begin(), v.end());
  r.min = v.front();
  r.max = v.back();
  r.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Sequential reads of `block` bytes with `depth` in flight, starting at `start` and wrapping at
// the end of the file, until `total` bytes or `max_seconds`. Returns bytes read and seconds.
struct Pass {
  uint64_t bytes = 0;
  double seconds = 0;
};

Result<Pass> read_pass(IoBackend& io, const IoFile& file, uint64_t file_bytes, int depth,
                       uint64_t block, uint64_t start, uint64_t total, double max_seconds,
                       std::span<std::byte> buffers, bool fixed) {
  const uint64_t blocks_in_file = file_bytes / block;
  uint64_t next_block = (start / block) % blocks_in_file, issued = 0;
  int in_flight = 0;
  Pass pass;
  std::vector<IoCompletion> done(static_cast<size_t>(depth));
  std::vector<int> free_slots;
  for (int i = depth - 1; i >= 0; --i) free_slots.push_back(i);
  const Clock::time_point t0 = Clock::now();
  bool stop = false;
  while (true) {
    while (!stop && !free_slots.empty() && issued < total) {
      const int slot = free_slots.back();
      free_slots.pop_back();
      IoOp op;
      op.kind = IoOpKind::kRead;
      op.fd = file.fd();
      op.offset = next_block * block;
      op.buf = buffers.data() + static_cast<size_t>(slot) * block;
      op.length = static_cast<uint32_t>(block);
      op.buf_index = fixed ? slot : -1;
      op.tag = static_cast<uint64_t>(slot);
      STRATA_RETURN_IF_ERROR(io.submit(op));
      ++in_flight;
      issued += block;
      next_block = (next_block + 1) % blocks_in_file;
    }
    if (in_flight == 0) break;
    STRATA_ASSIGN_OR_RETURN(int n, io.wait(1, done));
    for (int i = 0; i < n; ++i) {
      const IoCompletion& c = done[static_cast<size_t>(i)];
      if (c.result < 0) {
        return io_error(file.path().string() + ": benchmark read: " +
                            std::strerror(static_cast<int>(-c.result)),
                        static_cast<int>(-c.result));
      }
      pass.bytes += static_cast<uint64_t>(c.result);
      free_slots.push_back(static_cast<int>(c.tag));
      --in_flight;
    }
    if (!stop && seconds_since(t0) > max_seconds) stop = true;
  }
  pass.seconds = seconds_since(t0);
  return pass;
}

Result<Pass> pread_pass(const IoFile& file, uint64_t file_bytes, uint64_t block, uint64_t start,
                        uint64_t total, double max_seconds, std::byte* buf) {
  const uint64_t blocks_in_file = file_bytes / block;
  uint64_t next_block = (start / block) % blocks_in_file;
  Pass pass;
  const Clock::time_point t0 = Clock::now();
  while (pass.bytes < total && seconds_since(t0) <= max_seconds) {
    ssize_t rc = ::pread(file.fd(), buf, block, static_cast<off_t>(next_block * block));
    if (rc < 0) {
      return io_error(file.path().string() + ": benchmark pread: " + std::strerror(errno), errno);
    }
    pass.bytes += static_cast<uint64_t>(rc);
    next_block = (next_block + 1) % blocks_in_file;
  }
  pass.seconds = seconds_since(t0);
  return pass;
}

Status write_test_file(const IoFile& file, uint64_t bytes, IoBenchResult& r, Logger& log) {
  Logger quiet(LogLevel::kQuiet);
  STRATA_ASSIGN_OR_RETURN(auto io, make_io_backend({IoBackendKind::kAuto, 16}, quiet));
  const uint64_t block = 4 << 20;
  STRATA_ASSIGN_OR_RETURN(AlignedBuffer buf, AlignedBuffer::allocate(block));
  std::mt19937_64 rng(42);
  auto* words = reinterpret_cast<uint64_t*>(buf.data());
  for (size_t i = 0; i < block / 8; ++i) words[i] = rng();
  std::vector<IoRequest> reqs;
  for (uint64_t off = 0; off < bytes; off += block) {
    reqs.push_back(IoRequest{IoOpKind::kWrite, &file, off, buf.data(), std::min(block, bytes - off),
                             -1, "benchmark data"});
  }
  log.info("bench io: writing " + format_bytes(bytes) + " to " + file.path().string());
  const Clock::time_point t0 = Clock::now();
  STRATA_RETURN_IF_ERROR(run_io(*io, reqs));
  STRATA_RETURN_IF_ERROR(file.sync());
  r.backend = std::string(io->name());
  r.op = "write";
  r.depth = io->queue_depth();
  r.block_bytes = block;
  r.direct = file.direct();
  r.bytes_per_rep = bytes;
  r.gbps = {static_cast<double>(bytes) / seconds_since(t0) / 1e9};
  summarise(r);
  return Status::ok();
}

IoBenchResult point(const char* backend, int depth, uint64_t block, bool direct) {
  IoBenchResult r;
  r.backend = backend;
  r.op = "read";
  r.depth = depth;
  r.block_bytes = block;
  r.direct = direct;
  return r;
}

}  // namespace

std::string filesystem_type(const std::filesystem::path& dir) {
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x01021994: return "tmpfs";
    case 0x9123683E: return "btrfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x6969: return "nfs";
    default: break;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%lx", static_cast<unsigned long>(st.f_type));
  return buf;
}

Result<std::vector<IoBenchResult>> run_io_bench(
    const IoBenchOptions& o, Logger& log,
    const std::function<void(const IoBenchResult&)>& on_result) {
  if (o.block_sizes.empty() || o.depths.empty() || o.repetitions < 1) {
    return invalid_argument("bench io: needs at least one block size, depth and repetition");
  }
  uint64_t max_block = 0;
  for (uint64_t b : o.block_sizes) {
    if (b == 0 || b % kIoAlignment != 0 || b > kMaxIoOpBytes) {
      return invalid_argument("bench io: block size " + std::to_string(b) +
                              " must be a positive multiple of 4 KiB, at most 1 GiB");
    }
    max_block = std::max(max_block, b);
  }
  int max_depth = 1;
  for (int d : o.depths) max_depth = std::max(max_depth, d);
  for (int d : o.fallback_depths) max_depth = std::max(max_depth, d);
  const uint64_t file_bytes = o.file_bytes / max_block * max_block;
  if (file_bytes == 0) {
    return invalid_argument("bench io: --size must be at least one block (" +
                            format_bytes(max_block) + ")");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(o.dir, ec)) {
    return not_found(o.dir.string() + ": not a directory (give --dir an existing directory on the "
                                      "drive to measure)");
  }
  const std::filesystem::path path = o.dir / "strata-bench-io.dat";
  const bool reuse = o.reuse_file && std::filesystem::file_size(path, ec) == file_bytes && !ec;
  if (!reuse) {
    struct statvfs vfs {};
    if (::statvfs(o.dir.c_str(), &vfs) == 0) {
      const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
      if (avail < file_bytes + (uint64_t{1} << 30)) {
        return invalid_argument(o.dir.string() + ": " + format_bytes(avail) + " free, the test "
                                "file needs " + format_bytes(file_bytes) +
                                " plus 1 GiB to spare: pass a smaller --size");
      }
    }
  }
  std::vector<IoBenchResult> results;
  auto report = [&](IoBenchResult r) {
    summarise(r);
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  };
  {
    STRATA_ASSIGN_OR_RETURN(auto wfile, IoFile::open(*make_thread_io_backend(1), path,
                                                     reuse ? FileAccess::kRead : FileAccess::kCreate,
                                                     true, log));
    if (!reuse) {
      IoBenchResult w;
      STRATA_RETURN_IF_ERROR(write_test_file(*wfile, file_bytes, w, log));
      report(w);
    }
  }
  auto remove_file = [&] {
    if (!o.keep_file && !o.reuse_file) std::filesystem::remove(path, ec);
  };
  auto thread_io = make_thread_io_backend(1);
  auto file_or = IoFile::open(*thread_io, path, FileAccess::kRead, true, log);
  if (!file_or.is_ok()) {
    remove_file();
    return file_or.status();
  }
  const IoFile& file = **file_or;
  auto buffers_or = AlignedBuffer::allocate(static_cast<size_t>(max_depth) * max_block);
  if (!buffers_or.is_ok()) {
    remove_file();
    return buffers_or.status();
  }
  AlignedBuffer& buffers = *buffers_or;
  auto rep_start = [&](int rep) { return file_bytes / o.repetitions * rep; };

  Status status;
  // io_uring: every depth x block size.
  for (int depth : o.depths) {
    Result<std::unique_ptr<IoBackend>> ring = make_io_uring_backend(depth);
    if (!ring.is_ok()) {
      log.warn("bench io: io_uring unavailable (" + ring.status().message() +
               "); measuring the fallback backends only");
      break;
    }
    for (uint64_t block : o.block_sizes) {
      bool fixed = false;
      if (o.register_buffers) {
        std::vector<iovec> iov(static_cast<size_t>(depth));
        for (int i = 0; i < depth; ++i) iov[static_cast<size_t>(i)] = {buffers.data() + i * block, block};
        fixed = (*ring)->register_buffers(iov).is_ok();
      }
      IoBenchResult r = point("io_uring", depth, block, file.direct());
      for (int rep = 0; rep < o.repetitions && status.is_ok(); ++rep) {
        Result<Pass> p = read_pass(**ring, file, file_bytes, depth, block, rep_start(rep),
                                   file_bytes, o.max_seconds_per_rep, buffers.span(), fixed);
        if (!p.is_ok()) status = p.status();
        else {
          if (rep == 0) r.bytes_per_rep = p->bytes;
          r.gbps.push_back(static_cast<double>(p->bytes) / p->seconds / 1e9);
        }
      }
      if (fixed) (*ring)->unregister_buffers();
      if (!status.is_ok()) break;
      report(std::move(r));
    }
    if (!status.is_ok()) break;
  }
  // The thread backend at the largest block size.
  for (int depth : o.fallback_depths) {
    if (!status.is_ok()) break;
    auto threads = make_thread_io_backend(depth);
    IoBenchResult r = point("threads", depth, max_block, file.direct());
    for (int rep = 0; rep < o.repetitions && status.is_ok(); ++rep) {
      Result<Pass> p = read_pass(*threads, file, file_bytes, depth, max_block, rep_start(rep),
                                 file_bytes, o.max_seconds_per_rep, buffers.span(), false);
      if (!p.is_ok()) status = p.status();
      else {
        if (rep == 0) r.bytes_per_rep = p->bytes;
        r.gbps.push_back(static_cast<double>(p->bytes) / p->seconds / 1e9);
      }
    }
    if (status.is_ok()) report(std::move(r));
  }
  // The synchronous baseline: one pread at a time in this thread.
  if (status.is_ok()) {
    IoBenchResult r = point("pread", 1, max_block, file.direct());
    for (int rep = 0; rep < o.repetitions && status.is_ok(); ++rep) {
      Result<Pass> p = pread_pass(file, file_bytes, max_block, rep_start(rep), file_bytes,
                                  o.max_seconds_per_rep, buffers.data());
      if (!p.is_ok()) status = p.status();
      else {
        if (rep == 0) r.bytes_per_rep = p->bytes;
        r.gbps.push_back(static_cast<double>(p->bytes) / p->seconds / 1e9);
      }
    }
    if (status.is_ok()) report(std::move(r));
  }
  remove_file();
  if (!status.is_ok()) return status;
  return results;
}

std::string io_bench_json(const IoBenchResult& r) {
  nlohmann::ordered_json j;
  j["bench"] = "io";
  j["backend"] = r.backend;
  j["op"] = r.op;
  j["queue_depth"] = r.depth;
  j["block_bytes"] = r.block_bytes;
  j["direct"] = r.direct;
  j["repetitions"] = r.gbps.size();
  j["bytes_per_rep"] = r.bytes_per_rep;
  j["gbps_min"] = r.min;
  j["gbps_median"] = r.median;
  j["gbps_max"] = r.max;
  return j.dump();
}

std::string io_bench_table(const std::vector<IoBenchResult>& results) {
  std::string s =
      "| backend | op | queue depth | block | O_DIRECT | reps | GB/s min | GB/s median | GB/s max |\n"
      "|---|---|---:|---:|---|---:|---:|---:|---:|\n";
  char line[256];
  for (const IoBenchResult& r : results) {
    std::snprintf(line, sizeof(line), "| %s | %s | %d | %s | %s | %zu | %.3f | %.3f | %.3f |\n",
                  r.backend.c_str(), r.op.c_str(), r.depth, format_bytes(r.block_bytes).c_str(),
                  r.direct ? "yes" : "no", r.gbps.size(), r.min, r.median, r.max);
    s += line;
  }
  return s;
}

}  // namespace strata::bench
