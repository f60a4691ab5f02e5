// StoreWriter: writes a weight store tensor by tensor, atomically. Everything goes into a sibling
// directory "<out>.partial-<pid>"; commit() syncs the data files, writes manifest.json last,
// renames the directory to <out> and syncs the parent, so a crash at any point leaves no
// directory at <out> that looks like a complete store. Data is written through the IoBackend
// (O_DIRECT where the filesystem allows). Not thread safe. Units: bytes.
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "storage/aligned_buffer.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"
#include "storage/store_format.h"

namespace strata::storage {

class StoreWriter {
 public:
  // Fails when <out> exists and is not an empty directory.
  static Result<std::unique_ptr<StoreWriter>> create(IoBackend& io, const std::filesystem::path& out,
                                                     Logger& log);
  // Without a successful commit(), removes the partial directory.
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Appends one tensor's stored bytes to data file `file` at the next 4 KiB boundary, recording
  // its checksum. Files are written one after another: naming a new file finishes the last one.
  Status add(const StoreTensor& meta, std::span<const std::byte> payload);
  // Copies a side file (config.json, tokenizer files) into the store unchanged.
  Status copy_file(const std::filesystem::path& src, const std::string& name);
  // Finishes the store; `manifest_info` supplies compression and source (tensors and files are
  // filled in by the writer).
  Status commit(StoreManifest manifest_info);

  const std::filesystem::path& partial_dir() const { return partial_; }

 private:
  StoreWriter(IoBackend& io, std::filesystem::path out, std::filesystem::path partial, Logger& log)
      : io_(io), out_(std::move(out)), partial_(std::move(partial)), log_(log) {}
  Status finish_file();

  IoBackend& io_;
  std::filesystem::path out_, partial_;
  Logger& log_;
  std::unique_ptr<IoFile> file_;
  std::string file_name_;
  uint64_t file_end_ = 0;
  AlignedBuffer staging_;
  StoreManifest manifest_;
  bool committed_ = false;
};

}  // namespace strata::storage
