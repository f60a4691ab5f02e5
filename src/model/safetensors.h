// SafetensorsFile: a validated reader for one .safetensors file (8-byte little-endian header
// length N, N bytes of JSON header, then the data section). open() checks the whole header:
// sizes, dtypes, shapes against byte ranges, ranges inside the data section and not overlapping.
// Tensors whose dtype strata cannot compute with (I64, F8_*, ...) are accepted at open and
// rejected only when read, so checkpoints carrying extra integer buffers still open.
// The object owns its file descriptor; read() uses pread and is safe to call from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace strata::model {

// Largest JSON header accepted, in bytes (the safetensors reference implementation uses 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;      // as written in the file: "F16", "BF16", "I64", ...
  std::optional<DType> dtype;  // set when strata can load it (F32, F16, BF16, I32)
  Shape shape;
  uint64_t begin = 0;  // byte range [begin, end) relative to the data section
  uint64_t end = 0;
  uint64_t bytes() const { return end - begin; }
};

class SafetensorsFile {
 public:
  // Opens and validates `path`. Errors are kNotFound, kIoError or kCorrupt and name the file
  // (and the tensor, when one is at fault).
  static Result<std::unique_ptr<SafetensorsFile>> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Entries in data order (ascending begin).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Byte offset of the data section in the file (8 + N).
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_size_; }

  // nullptr when the file has no tensor of that name.
  const SafetensorsEntry* find(std::string_view name) const;

  // Reads one tensor into a new host tensor of its stored dtype and shape.
  Result<Tensor> read(const SafetensorsEntry& entry) const;
  Result<Tensor> read(std::string_view name) const;
  // Reads `shape`'s elements of `entry` starting `element_offset` elements into it (a slice of a
  // fused tensor), in the stored dtype. The range must lie inside the entry.
  Result<Tensor> read_part(const SafetensorsEntry& entry, uint64_t element_offset, Shape shape) const;

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// The checked contents of a header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data order (ascending begin)
  std::map<std::string, std::string> metadata;
};

// Parses and validates the JSON header of `path` (named in errors) whose data section holds
// `data_size` bytes: every entry's dtype, shape and byte range, ranges inside the data section and
// not overlapping. Pure; the reader behind SafetensorsFile::open.
Result<SafetensorsHeader> parse_safetensors_header(std::string_view header, uint64_t data_size,
                                                   const std::string& path);

// model.safetensors.index.json: which shard file holds each tensor.
struct SafetensorsIndex {
  std::vector<std::pair<std::string, std::string>> weight_map;  // (tensor, shard), in name order
};
// An index lists each tensor once: a few MiB for the largest models.
inline constexpr uint64_t kMaxSafetensorsIndexBytes = 256 << 20;
// Parses an index (`path` names it in errors): an object with a "weight_map" object of shard file
// names, each a relative path inside the model directory. Pure.
Result<SafetensorsIndex> parse_safetensors_index(std::string_view text, const std::string& path);

// Size in bytes of one element of a safetensors dtype ("F16" -> 2, "BOOL" -> 1), or nullopt for a
// name the format does not define.
std::optional<size_t> safetensors_dtype_size(std::string_view dtype_name);

}  // namespace strata::model
