#include "offload/kv_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "common/units.h"
#include "storage/aligned_buffer.h"

namespace strata::offload {

namespace {

using Spans = std::vector<std::pair<uint64_t, uint64_t>>;

// The bytes of one of k or v that hold rows [r0, r1) (row = slot * max_len + position): fp16 rows
// in one span; int4 rows in their codes, scales and mins.
void add_row_bytes(const compute::HostKvShape& shape, int64_t r0, int64_t r1, Spans& out) {
  if (r0 >= r1) return;
  if (!shape.int4) {
    const uint64_t row = static_cast<uint64_t>(shape.row_elems()) * 2;
    out.emplace_back(static_cast<uint64_t>(r0) * row, static_cast<uint64_t>(r1) * row);
    return;
  }
  out.emplace_back(shape.code_offset(r0), shape.code_offset(r1));
  out.emplace_back(shape.scale_offset(r0), shape.scale_offset(r1));
  out.emplace_back(shape.min_offset(r0), shape.min_offset(r1));
}

// Sorted, with spans that touch or overlap joined.
Spans merged(Spans s) {
  std::sort(s.begin(), s.end());
  Spans out;
  for (const auto& x : s) {
    if (!out.empty() && x.first <= out.back().second) {
      out.back().second = std::max(out.back().second, x.second);
    } else {
      out.push_back(x);
    }
  }
  return out;
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> kv_row_pages(const compute::HostKvShape& shape,
                                                        std::span<const KvRows> rows) {
  Spans r;
  for (const KvRows& k : rows) {
    STRATA_CHECK(k.slot >= 0 && k.slot < shape.slots && 0 <= k.begin && k.begin <= k.end &&
                     k.slot * shape.max_len + k.end <= shape.rows(),
                 "kv_row_pages: rows outside the cache");
    add_row_bytes(shape, k.slot * shape.max_len + k.begin, k.slot * shape.max_len + k.end, r);
  }
  const uint64_t a = storage::kIoAlignment;
  for (auto& [b, e] : r) {
    b = b / a * a;
    e = storage::align_up(e);
  }
  return merged(std::move(r));
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

Result<uint64_t> KvFile::write(int64_t unit, std::span<const KvRows> rows, std::span<const KvRows> read_before,
                               std::byte* staging) {
  STRATA_RETURN_IF_ERROR(keep_unwritten_bytes(unit, rows, read_before, staging));
  return transfer(storage::IoOpKind::kWrite, unit, rows, staging);
}

Status KvFile::keep_unwritten_bytes(int64_t unit, std::span<const KvRows> rows,
                                    std::span<const KvRows> read_before, std::byte* staging) {
  STRATA_CHECK(unit >= 0 && unit < units_, "KvFile: no such unit");
  const uint64_t a = storage::kIoAlignment;
  // What staging holds, or may hold anything in: the pages read this step, every written
  // sequence from its first written row to the end of the slot (or page) that holds its last,
  // the padding after the cache.
  Spans held = kv_row_pages(shape_, read_before);
  const int64_t len = shape_.max_len;
  for (const KvRows& k : rows)
    add_row_bytes(shape_, k.slot * len + k.begin, (k.slot * len + std::max<int64_t>(k.end, 1) + len - 1) / len * len,
                  held);
  held.emplace_back(shape_.bytes_each(), v_offset_);
  held = merged(std::move(held));
  // The written pages not wholly inside what staging holds: the rest of them comes from the file.
  std::vector<uint64_t> stale;
  size_t h = 0;
  for (const auto& [b, e] : kv_row_pages(shape_, rows))
    for (uint64_t p = b; p < e; p += a) {
      while (h < held.size() && held[h].second <= p) ++h;
      if (h < held.size() && held[h].first <= p && held[h].second >= p + a) continue;
      stale.push_back(p);
    }
  if (stale.empty()) return Status::ok();

  STRATA_ASSIGN_OR_RETURN(auto scratch, storage::AlignedBuffer::allocate(2 * stale.size() * a));
  const uint64_t base = static_cast<uint64_t>(unit) * region_bytes();
  std::vector<storage::IoRequest> reqs;
  for (size_t part = 0; part < 2; ++part)
    for (size_t i = 0; i < stale.size(); ++i) {
      storage::IoRequest r;
      r.kind = storage::IoOpKind::kRead;
      r.file = file_.get();
      r.offset = base + (part == 0 ? 0 : v_offset_) + stale[i];
      r.buf = scratch.data() + (part * stale.size() + i) * a;
      r.length = a;
      r.what = std::string("KV cache (") + (part == 0 ? "keys" : "values") + " of unit " + std::to_string(unit) +
               ", the rows a write keeps)";
      reqs.push_back(std::move(r));
    }
  Status st = storage::run_io(io_, reqs);
  if (!st.is_ok()) return st.with_context("reading the KV cache from " + path_.string());
  for (size_t part = 0; part < 2; ++part)
    for (size_t i = 0; i < stale.size(); ++i) {
      const uint64_t p = stale[i];
      std::byte* dst = staging + (part == 0 ? 0 : v_offset_);
      const std::byte* page = scratch.data() + (part * stale.size() + i) * a;
      auto keep = [&](uint64_t from, uint64_t to) {  // offsets in k or v
        if (from < to) std::memcpy(dst + from, page + (from - p), to - from);
      };
      uint64_t at = p;
      auto j = std::lower_bound(held.begin(), held.end(), p,
                                [](const std::pair<uint64_t, uint64_t>& s, uint64_t x) { return s.second <= x; });
      for (; j != held.end() && j->first < p + a; ++j) {
        keep(at, std::min(j->first, p + a));
        at = std::max(at, j->second);
      }
      keep(at, p + a);
    }
  return Status::ok();
}

}  // namespace strata::offload
