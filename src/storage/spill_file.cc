#include "storage/spill_file.h"

#include "storage/checksum.h"

namespace strata::storage {

Result<std::unique_ptr<SpillFile>> SpillFile::create(IoBackend& io,
                                                     const std::filesystem::path& path,
                                                     bool verify, Logger& log) {
  STRATA_ASSIGN_OR_RETURN(auto file,
                          IoFile::open(io, path, FileAccess::kReadWrite, /*direct=*/true, log));
  return std::unique_ptr<SpillFile>(new SpillFile(io, std::move(file), verify));
}

SpillFile::~SpillFile() {
  const std::filesystem::path p = file_->path();
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(p, ec);
}

Status SpillFile::write(uint64_t offset, std::span<const std::byte> data) {
  Block& b = blocks_[offset];
  b.valid = false;
  IoRequest req{IoOpKind::kWrite, file_.get(), offset, const_cast<std::byte*>(data.data()),
                data.size(), -1, "spilled block"};
  STRATA_RETURN_IF_ERROR(run_io(io_, std::span<const IoRequest>(&req, 1)));
  b.bytes = data.size();
  b.hash = verify_ ? xxhash64(data) : 0;
  b.valid = true;
  return Status::ok();
}

Status SpillFile::read(uint64_t offset, std::span<std::byte> data) {
  auto it = blocks_.find(offset);
  if (it == blocks_.end() || !it->second.valid) {
    return internal_error(path().string() + ": block at offset " + std::to_string(offset) +
                          " was never written successfully; it cannot be read back");
  }
  IoRequest req{IoOpKind::kRead, file_.get(), offset, data.data(), data.size(), -1,
                "spilled block"};
  STRATA_RETURN_IF_ERROR(run_io(io_, std::span<const IoRequest>(&req, 1)));
  if (verify_ && data.size() == it->second.bytes) {
    const uint64_t got = xxhash64(data);
    if (got != it->second.hash) {
      return corrupt(path().string() + ": spilled block at offset " + std::to_string(offset) +
                     " (" + std::to_string(data.size()) + " bytes) read back with xxhash64 " +
                     checksum_hex(got) + ", but " + checksum_hex(it->second.hash) +
                     " was written (the disk returned different bytes: check the drive)");
    }
  }
  return Status::ok();
}

}  // namespace strata::storage
