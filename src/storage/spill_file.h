// SpillFile: a file in the offload directory that holds KV-cache (or activation) blocks spilled
// from memory, written and read back through the same IoBackend as weights (O_DIRECT where the
// filesystem allows; on tmpfs it falls back to buffered I/O with a warning). With verify on, every
// write records the xxhash64 of its bytes and every read-back checks it. The file is removed
// when the object is destroyed. Not thread safe. Units: bytes; offsets, sizes and buffers must be
// multiples of kIoAlignment.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>

#include "common/log.h"
#include "common/status.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"

namespace strata::storage {

class SpillFile {
 public:
  static Result<std::unique_ptr<SpillFile>> create(IoBackend& io, const std::filesystem::path& path,
                                                   bool verify, Logger& log);
  ~SpillFile();

  // Writes `data` at `offset`. On failure the block's previous contents are forgotten: reading
  // it back is an error until it is written again.
  Status write(uint64_t offset, std::span<const std::byte> data);
  // Reads `data.size()` bytes at `offset`; with verify, checks them against the last write there.
  Status read(uint64_t offset, std::span<std::byte> data);

  bool direct() const { return file_->direct(); }
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  SpillFile(IoBackend& io, std::unique_ptr<IoFile> file, bool verify)
      : io_(io), file_(std::move(file)), verify_(verify) {}

  struct Block {
    uint64_t bytes = 0;
    uint64_t hash = 0;
    bool valid = false;
  };

  IoBackend& io_;
  std::unique_ptr<IoFile> file_;
  bool verify_;
  std::map<uint64_t, Block> blocks_;  // offset -> last write there
};

}  // namespace strata::storage
