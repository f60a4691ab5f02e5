// KvFile: the disk tier of the KV cache. One region per (layer, GPU batch) in a file of the
// offload directory holds that unit's keys, then its values, each in compute/host_kv.h's layout
// (fp16 or int4-g64), so a region and a pinned staging buffer of region_bytes() are byte for byte
// the same and a step moves only the pages holding the rows it reads or writes. The file is
// created with its full size reserved (a full disk fails at create(), naming the directory) and
// removed by the destructor. Transfers are driven by one thread at a time (the IoBackend's rule).
// Units: bytes, positions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "compute/host_kv.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"

namespace strata::offload {

// Positions [begin, end) of the sequence in `slot`.
struct KvRows {
  int64_t slot = 0;
  int64_t begin = 0;
  int64_t end = 0;
};

// The byte ranges [first, second) of one of k or v (offsets from its start) that hold `rows`
// (codes, scales and mins for int4), rounded out to storage::kIoAlignment and merged, in order.
std::vector<std::pair<uint64_t, uint64_t>> kv_row_pages(const compute::HostKvShape& shape,
                                                        std::span<const KvRows> rows);

class KvFile {
 public:
  // A file of `units` regions for KV of `shape` in `dir` (created if missing).
  static Result<std::unique_ptr<KvFile>> create(storage::IoBackend& io, const std::filesystem::path& dir,
                                                const compute::HostKvShape& shape, int64_t units, Logger& log);
  ~KvFile();
  KvFile(const KvFile&) = delete;
  KvFile& operator=(const KvFile&) = delete;

  const compute::HostKvShape& shape() const { return shape_; }
  // The same bytes seen as other slots (KvTiers::set_page_len): slots * max_len stays the same.
  void set_shape(const compute::HostKvShape& shape) {
    STRATA_CHECK(shape.rows() == shape_.rows() && shape.row_elems() == shape_.row_elems() && shape.int4 == shape_.int4,
                 "KvFile: a new shape must keep the rows");
    shape_ = shape;
  }
  size_t region_bytes() const { return 2 * v_offset_; }  // a staging buffer's size
  size_t v_offset() const { return v_offset_; }           // values' offset in a region
  uint64_t file_bytes() const { return file_bytes_; }
  const std::filesystem::path& path() const { return path_; }

  // Moves the pages of unit `unit` holding `rows` of k and v between the file and `staging`
  // (region_bytes(), kIoAlignment-aligned). Returns the bytes moved.
  Result<uint64_t> read(int64_t unit, std::span<const KvRows> rows, std::byte* staging);
  // A write changes only the pages that hold some of `rows`. The rest of such a page is kept:
  // staging holds it where `read_before` (the rows this step read into staging) covered the page,
  // and a written sequence's positions after its rows are free; any other bytes of the page (a
  // neighbouring sequence a prompt step does not touch, positions before the rows that were not
  // read) are first read from the file into staging, so no other sequence's KV is written over.
  Result<uint64_t> write(int64_t unit, std::span<const KvRows> rows, std::span<const KvRows> read_before,
                         std::byte* staging);

 private:
  KvFile(storage::IoBackend& io, compute::HostKvShape shape) : io_(io), shape_(shape) {}
  Result<uint64_t> transfer(storage::IoOpKind kind, int64_t unit, std::span<const KvRows> rows,
                            std::byte* staging);
  // Reads into `staging` the bytes of the pages `write` changes that staging does not hold.
  Status keep_unwritten_bytes(int64_t unit, std::span<const KvRows> rows, std::span<const KvRows> read_before,
                              std::byte* staging);

  storage::IoBackend& io_;
  compute::HostKvShape shape_;
  size_t v_offset_ = 0;
  int64_t units_ = 0;
  uint64_t file_bytes_ = 0;
  std::filesystem::path path_;
  std::unique_ptr<storage::IoFile> file_;
};

}  // namespace strata::offload
