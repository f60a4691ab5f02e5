// The weight store format: a directory with one data file per layer (layer.000.bin, ...) plus
// embed.bin (embeddings) and head.bin (final norm, head), every tensor at a 4 KiB-aligned
// offset, and manifest.json listing each tensor (name, file, dtype, shape, offset, bytes,
// compression, xxhash64 of its bytes) under a format version. The manifest is written last, so
// a directory without one is not a store. Pure data and functions; thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "common/tensor.h"

namespace strata::storage {

inline constexpr int kStoreFormatVersion = 1;
inline constexpr std::string_view kStoreFormatName = "strata-weight-store";
inline constexpr std::string_view kStoreManifestName = "manifest.json";
inline constexpr uint64_t kStoreAlignment = 4096;
// A manifest lists each tensor once: a few MiB for the largest models.
inline constexpr uint64_t kMaxManifestBytes = 256 << 20;

enum class Compression {
  kNone,     // the tensor's bytes in its dtype, row-major
  kInt4G64,  // int4, groups of 64 along the last dim: codes [r, c/2], fp16 scales and mins
             // [r, c/64] each, back to back (compute/int4.h); dtype is what dequantising yields
};

std::string_view compression_name(Compression c);  // "none", "int4-g64"
std::optional<Compression> compression_from_name(std::string_view name);

// Bytes a tensor of `shape` and `dtype` takes under `c`; nullopt when `c` cannot hold that shape.
std::optional<uint64_t> stored_bytes(const Shape& shape, DType dtype, Compression c);

struct StoreTensor {
  std::string name;  // canonical weight name (model/weight_names.h)
  std::string file;  // data file inside the store directory
  DType dtype = DType::kF16;
  Shape shape;
  uint64_t offset = 0;  // multiple of kStoreAlignment
  uint64_t bytes = 0;   // stored bytes (not padded)
  Compression compression = Compression::kNone;
  uint64_t xxhash64 = 0;  // of the `bytes` stored bytes
};

struct StoreFile {
  std::string name;
  uint64_t bytes = 0;  // file size, a multiple of kStoreAlignment
};

struct StoreManifest {
  int format_version = kStoreFormatVersion;
  std::string compression = "none";  // what `strata convert --compress` was given
  std::string source;                // the directory it was converted from
  std::vector<StoreFile> files;
  std::vector<StoreTensor> tensors;
};

// The data file a canonical weight name belongs in: "embed.bin", "layer.007.bin", "head.bin".
std::string store_file_for(std::string_view tensor_name);

std::string manifest_to_json(const StoreManifest& m);

// Parses and validates a manifest (`where` names it in messages): the format name and version
// first (another version is kUnsupported), then every entry: known dtype and compression, byte
// count matching shape, aligned offset, inside its file, not overlapping another tensor.
Result<StoreManifest> parse_manifest(std::string_view json, const std::string& where);

}  // namespace strata::storage
