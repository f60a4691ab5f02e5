#include "storage/store_format.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "common/json_read.h"
#include "storage/checksum.h"

namespace strata::storage {

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kInt4G64: return "int4-g64";
  }
  return "?";
}

std::optional<Compression> compression_from_name(std::string_view name) {
  if (name == "none") return Compression::kNone;
  if (name == "int4-g64") return Compression::kInt4G64;
  return std::nullopt;
}

std::optional<uint64_t> stored_bytes(const Shape& shape, DType dtype, Compression c) {
  // Sizes past 2^56 bytes are no real tensor; stopping there keeps every product in range.
  constexpr uint64_t kLimit = uint64_t{1} << 56;
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > kLimit / static_cast<uint64_t>(d)) return std::nullopt;
    n *= static_cast<uint64_t>(d);
  }
  if (c == Compression::kNone) return n * dtype_size(dtype);
  if (shape.size() != 2 || shape[1] % 64 != 0 || shape[1] == 0) return std::nullopt;
  const uint64_t groups = n / 64;
  return n / 2 + groups * 2 * sizeof(uint16_t);
}

std::string store_file_for(std::string_view name) {
  if (name.starts_with("layers.")) {
    const size_t dot = name.find('.', 7);
    const std::string index(name.substr(7, dot == std::string_view::npos ? dot : dot - 7));
    char buf[32];
    std::snprintf(buf, sizeof(buf), "layer.%03d.bin", std::atoi(index.c_str()));
    return buf;
  }
  if (name.starts_with("embed.tokens") || name.starts_with("embed.positions") ||
      name.starts_with("embed.project_in")) {
    return "embed.bin";
  }
  return "head.bin";
}

std::string manifest_to_json(const StoreManifest& m) {
  nlohmann::ordered_json j;
  j["format"] = kStoreFormatName;
  j["format_version"] = m.format_version;
  j["alignment"] = kStoreAlignment;
  j["compression"] = m.compression;
  j["source"] = m.source;
  j["files"] = nlohmann::ordered_json::array();
  for (const StoreFile& f : m.files) j["files"].push_back({{"name", f.name}, {"bytes", f.bytes}});
  j["tensors"] = nlohmann::ordered_json::array();
  for (const StoreTensor& t : m.tensors) {
    j["tensors"].push_back({{"name", t.name},
                            {"file", t.file},
                            {"dtype", dtype_name(t.dtype)},
                            {"shape", t.shape},
                            {"offset", t.offset},
                            {"bytes", t.bytes},
                            {"compression", compression_name(t.compression)},
                            {"xxhash64", checksum_hex(t.xxhash64)}});
  }
  return j.dump(1) + "\n";
}

namespace {

using nlohmann::json;

bool plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

// The largest offset or size a manifest may state: far beyond any disk, and small enough that
// sums of two never overflow.
constexpr int64_t kMaxStoreBytes = int64_t{1} << 56;
// The largest dimension of a stored tensor (as config.json allows) and the most dimensions.
constexpr int64_t kMaxStoreDim = int64_t{1} << 31;
constexpr size_t kMaxStoreRank = 8;

Result<std::string> string_field(const json& e, const char* key, const std::string& where) {
  if (!e.is_object() || !e.contains(key) || !e.at(key).is_string())
    return corrupt(where + ": field '" + key + "' must be a string");
  return e.at(key).get<std::string>();
}

Result<uint64_t> size_field(const json& e, const char* key, const std::string& where) {
  Result<int64_t> v = json_int_in(e, key, 0, kMaxStoreBytes, where);
  if (!v.is_ok()) return corrupt(v.status().message());
  return static_cast<uint64_t>(*v);
}

Result<Shape> shape_field(const json& e, const std::string& where) {
  if (!e.contains("shape") || !e.at("shape").is_array() || e.at("shape").size() > kMaxStoreRank)
    return corrupt(where + ": field 'shape' must be an array of at most " + std::to_string(kMaxStoreRank) +
                   " dimensions");
  Shape shape;
  for (const json& d : e.at("shape")) {
    const std::optional<int64_t> v = json_to_int64(d);
    if (!v || *v < 0 || *v > kMaxStoreDim)
      return corrupt(where + ": field 'shape' must hold integers in [0, 2^31] (got " + e.at("shape").dump() + ")");
    shape.push_back(*v);
  }
  return shape;
}

Result<StoreTensor> parse_tensor(const json& e, const std::map<std::string, uint64_t>& file_bytes,
                                 const std::string& where, size_t index) {
  const std::string at = where + ": tensors[" + std::to_string(index) + "]";
  if (!e.is_object()) return corrupt(at + " must be an object");
  StoreTensor t;
  STRATA_ASSIGN_OR_RETURN(t.name, string_field(e, "name", at));
  const std::string tw = where + ": tensor '" + t.name + "'";
  STRATA_ASSIGN_OR_RETURN(t.file, string_field(e, "file", tw));
  auto file = file_bytes.find(t.file);
  if (file == file_bytes.end()) return corrupt(tw + " is in unlisted file '" + t.file + "'");
  STRATA_ASSIGN_OR_RETURN(std::string dtype, string_field(e, "dtype", tw));
  auto dt = dtype_from_name(dtype);
  if (!dt || *dt == DType::kI32) return corrupt(tw + " has an unsupported dtype");
  t.dtype = *dt;
  STRATA_ASSIGN_OR_RETURN(t.shape, shape_field(e, tw));
  STRATA_ASSIGN_OR_RETURN(t.offset, size_field(e, "offset", tw));
  STRATA_ASSIGN_OR_RETURN(t.bytes, size_field(e, "bytes", tw));
  STRATA_ASSIGN_OR_RETURN(std::string comp, string_field(e, "compression", tw));
  auto c = compression_from_name(comp);
  if (!c) return corrupt(tw + " has unknown compression '" + comp + "'");
  t.compression = *c;
  STRATA_ASSIGN_OR_RETURN(std::string hash, string_field(e, "xxhash64", tw));
  auto h = parse_checksum_hex(hash);
  if (!h) return corrupt(tw + " has a malformed xxhash64 (want 16 hex digits)");
  t.xxhash64 = *h;
  auto want = stored_bytes(t.shape, t.dtype, t.compression);
  if (!want || *want != t.bytes) {
    return corrupt(tw + " says " + std::to_string(t.bytes) + " bytes, but a " + shape_string(t.shape) + " " +
                   std::string(dtype_name(t.dtype)) + " tensor (" + std::string(compression_name(t.compression)) +
                   ") takes " + (want ? std::to_string(*want) : std::string("an impossible size")));
  }
  if (t.offset % kStoreAlignment != 0) {
    return corrupt(tw + " starts at offset " + std::to_string(t.offset) + ", not a multiple of 4096");
  }
  if (t.offset + t.bytes > file->second) {  // both below 2^56: no overflow
    return corrupt(tw + " ends at byte " + std::to_string(t.offset + t.bytes) + " of '" + t.file + "', which has " +
                   std::to_string(file->second));
  }
  return t;
}

Status parse_header(const json& j, const std::string& where, StoreManifest& m) {
  if (!j.is_object() || !j.contains("format") || j.at("format") != kStoreFormatName) {
    return corrupt(where + ": not a strata weight store manifest (no \"format\": \"" +
                   std::string(kStoreFormatName) + "\")");
  }
  const std::optional<int64_t> version =
      j.contains("format_version") && j.at("format_version").is_number_integer() ? json_to_int64(j.at("format_version"))
                                                                                  : std::nullopt;
  if (!version) return corrupt(where + ": no integer \"format_version\"");
  if (*version != kStoreFormatVersion) {
    return unsupported(where + ": weight store format version " + std::to_string(*version) +
                       ", but this strata reads version " + std::to_string(kStoreFormatVersion) +
                       ": convert the model again with this strata (strata convert)");
  }
  m.format_version = static_cast<int>(*version);
  if (!j.contains("alignment") || json_to_int64(j.at("alignment")) != static_cast<int64_t>(kStoreAlignment)) {
    return corrupt(where + ": alignment must be " + std::to_string(kStoreAlignment));
  }
  for (const char* key : {"compression", "source"}) {
    if (j.contains(key) && !j.at(key).is_string()) return corrupt(where + ": field '" + key + "' must be a string");
  }
  m.compression = j.contains("compression") ? j.at("compression").get<std::string>() : "none";
  m.source = j.contains("source") ? j.at("source").get<std::string>() : "";
  return Status::ok();
}

}  // namespace

Result<StoreManifest> parse_manifest(std::string_view text, const std::string& where) {
  Result<json> parsed = parse_json(text, where, JsonLimits{.max_bytes = kMaxManifestBytes, .max_depth = 8});
  if (!parsed.is_ok()) return corrupt(parsed.status().message() + " (re-run strata convert)");
  const json& j = *parsed;
  StoreManifest m;
  STRATA_RETURN_IF_ERROR(parse_header(j, where, m));
  if (!j.contains("files") || !j.at("files").is_array()) return corrupt(where + ": field 'files' must be an array");
  if (!j.contains("tensors") || !j.at("tensors").is_array())
    return corrupt(where + ": field 'tensors' must be an array");
  std::map<std::string, uint64_t> file_bytes;
  for (size_t i = 0; i < j.at("files").size(); ++i) {
    const json& f = j.at("files")[i];
    const std::string at = where + ": files[" + std::to_string(i) + "]";
    if (!f.is_object()) return corrupt(at + " must be an object");
    StoreFile sf;
    STRATA_ASSIGN_OR_RETURN(sf.name, string_field(f, "name", at));
    STRATA_ASSIGN_OR_RETURN(sf.bytes, size_field(f, "bytes", at));
    if (!plain_file_name(sf.name)) return corrupt(where + ": file name '" + sf.name + "' must be a plain file name");
    if (!file_bytes.emplace(sf.name, sf.bytes).second) return corrupt(where + ": file '" + sf.name + "' is listed twice");
    m.files.push_back(std::move(sf));
  }
  std::set<std::string> names;
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> extents;
  for (size_t i = 0; i < j.at("tensors").size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(StoreTensor t, parse_tensor(j.at("tensors")[i], file_bytes, where, i));
    if (!names.insert(t.name).second) return corrupt(where + ": tensor '" + t.name + "' is listed twice");
    extents[t.file].emplace_back(t.offset, t.offset + t.bytes);
    m.tensors.push_back(std::move(t));
  }
  for (auto& [file, ext] : extents) {
    std::sort(ext.begin(), ext.end());
    for (size_t i = 1; i < ext.size(); ++i) {
      if (ext[i].first < ext[i - 1].second) {
        return corrupt(where + ": two tensors overlap in '" + file + "' at offset " + std::to_string(ext[i].first));
      }
    }
  }
  return m;
}

}  // namespace strata::storage
