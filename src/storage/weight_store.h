// WeightStore: reads a weight store (store_format.h) through an IoBackend with O_DIRECT. open()
// validates the manifest (format version included) and checks every data file is as long as the
// manifest says; read() moves a tensor's bytes into a 4 KiB-aligned buffer and verifies its
// xxhash64 before handing it out, so no caller ever sees bytes that differ from what was written.
// The store owns its file descriptors and borrows the backend and logger. Not thread safe.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "storage/aligned_buffer.h"
#include "storage/io_backend.h"
#include "storage/io_file.h"
#include "storage/store_format.h"

namespace strata::storage {

// True when `dir` holds a manifest.json (it may still be invalid).
bool is_weight_store(const std::filesystem::path& dir);

class WeightStore {
 public:
  static Result<std::unique_ptr<WeightStore>> open(const std::filesystem::path& dir, IoBackend& io,
                                                   Logger& log);

  const std::filesystem::path& dir() const { return dir_; }
  const StoreManifest& manifest() const { return manifest_; }
  // nullptr when the store has no tensor of that name.
  const StoreTensor* find(const std::string& name) const;

  // Reads tensors (one batch of I/O, up to queue_depth() ops in flight) into new buffers, in
  // order, each verified against its checksum. Errors name the file, tensor and offset.
  Result<std::vector<AlignedBuffer>> read(std::span<const StoreTensor* const> tensors);
  Result<AlignedBuffer> read(const StoreTensor& tensor);

  const IoStats& stats() const { return stats_; }

 private:
  WeightStore(std::filesystem::path dir, IoBackend& io, Logger& log)
      : dir_(std::move(dir)), io_(io), log_(log) {}

  std::filesystem::path dir_;
  IoBackend& io_;
  Logger& log_;
  StoreManifest manifest_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::unique_ptr<IoFile>> files_;
  IoStats stats_;
};

// Checks `bytes` (read from `t`) against its manifest checksum: kCorrupt naming file, tensor and
// offset on a mismatch.
Status verify_tensor_bytes(const std::filesystem::path& dir, const StoreTensor& t,
                           std::span<const std::byte> bytes);

}  // namespace strata::storage
