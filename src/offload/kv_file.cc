#include "offload/kv_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "common/check.h"
#include "common/units.h"

namespace strata::offload {

std::vector<std::pair<uint64_t, uint64_t>> kv_row_pages(const compute::HostKvShape& shape,
                                                        std::span<const KvRows> rows) {
  std::vector<std::pair<uint64_t, uint64_t>> r;
  const uint64_t E = static_cast<uint64_t>(shape.row_elems());
  for (const KvRows& k : rows) {
    STRATA_CHECK(k.slot >= 0 && k.slot < shape.slots && 0 <= k.begin && k.begin <= k.end && k.end <= shape.max_len,
                 "kv_row_pages: rows outside the cache");
    if (k.begin == k.end) continue;
    const uint64_t r0 = static_cast<uint64_t>(k.slot * shape.max_len + k.begin);
    const uint64_t r1 = static_cast<uint64_t>(k.slot * shape.max_len + k.end);
    if (!shape.int4) {
      r.emplace_back(r0 * E * 2, r1 * E * 2);
    } else {
      r.emplace_back(shape.code_offset(static_cast<int64_t>(r0)), shape.code_offset(static_cast<int64_t>(r1)));
      r.emplace_back(shape.scale_offset(static_cast<int64_t>(r0)), shape.scale_offset(static_cast<int64_t>(r1)));
      r.emplace_back(shape.min_offset(static_cast<int64_t>(r0)), shape.min_offset(static_cast<int64_t>(r1)));
    }
  }
  const uint64_t a = storage::kIoAlignment;
  for (auto& [b, e] : r) {
    b = b / a * a;
    e = storage::align_up(e);
  }
  std::sort(r.begin(), r.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& x : r) {
    if (!merged.empty() && x.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, x.second);
    } else {
      merged.push_back(x);
    }
  }
  return merged;
}

Result<std::unique_ptr<KvFile>> KvFile::create(storage::IoBackend& io, const std::filesystem::path& dir,
                                               const compute::HostKvShape& shape, int64_t units, Logger& log) {
  std::unique_ptr<KvFile> f(new KvFile(io, shape));
  f->v_offset_ = storage::align_up(shape.bytes_each());
  f->units_ = units;
  f->file_bytes_ = static_cast<uint64_t>(units) * f->region_bytes();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  f->path_ = dir / ("strata-kv-" + std::to_string(::getpid()) + ".bin");
  auto opened = storage::IoFile::open(io, f->path_, storage::FileAccess::kReadWrite, /*direct=*/true, log);
  if (!opened.is_ok())
    return opened.status().with_context("the KV cache's file in the offload directory " + dir.string() +
                                        " (is it writable? pass another --offload-dir)");
  f->file_ = std::move(opened).value();
  // Reserve the whole file now, so a disk too small fails here and not in the middle of a run.
  const int rc = ::posix_fallocate(f->file_->fd(), 0, static_cast<off_t>(f->file_bytes_));
  if (rc == ENOSPC)
    return io_error("the offload directory " + dir.string() + " cannot hold the KV cache's " +
                        format_bytes(f->file_bytes_) + " (the disk is full: free space or lower --disk-mem)",
                    rc);
  if (rc != 0) STRATA_RETURN_IF_ERROR(f->file_->truncate(f->file_bytes_));  // no fallocate here: sparse
  return f;
}

KvFile::~KvFile() {
  file_.reset();
  if (!path_.empty()) {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
}

Result<uint64_t> KvFile::transfer(storage::IoOpKind kind, int64_t unit, std::span<const KvRows> rows,
                                  std::byte* staging) {
  STRATA_CHECK(unit >= 0 && unit < units_, "KvFile: no such unit");
  const auto pages = kv_row_pages(shape_, rows);
  const uint64_t base = static_cast<uint64_t>(unit) * region_bytes();
  std::vector<storage::IoRequest> reqs;
  uint64_t moved = 0;
  for (size_t part = 0; part < 2; ++part) {
    const uint64_t off = part == 0 ? 0 : v_offset_;
    for (const auto& [b, e] : pages) {
      storage::IoRequest r;
      r.kind = kind;
      r.file = file_.get();
      r.offset = base + off + b;
      r.buf = staging + off + b;
      r.length = e - b;
      r.what = std::string("KV cache (") + (part == 0 ? "keys" : "values") + " of unit " + std::to_string(unit) + ")";
      moved += r.length;
      reqs.push_back(std::move(r));
    }
  }
  if (reqs.empty()) return uint64_t{0};
  Status st = storage::run_io(io_, reqs);
  if (!st.is_ok()) {
    if (kind == storage::IoOpKind::kWrite)
      return st.with_context("writing the KV cache to " + path_.string() +
                             " (is the offload directory's disk full or failing?)");
    return st.with_context("reading the KV cache from " + path_.string());
  }
  return moved;
}

Result<uint64_t> KvFile::read(int64_t unit, std::span<const KvRows> rows, std::byte* staging) {
  return transfer(storage::IoOpKind::kRead, unit, rows, staging);
}

Result<uint64_t> KvFile::write(int64_t unit, std::span<const KvRows> rows, const std::byte* staging) {
  return transfer(storage::IoOpKind::kWrite, unit, rows, const_cast<std::byte*>(staging));
}

}  // namespace strata::offload
