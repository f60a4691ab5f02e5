#include "storage/store_format.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

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
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
  }
  const uint64_t n = static_cast<uint64_t>(shape_numel(shape));
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

bool plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

Result<StoreManifest> parse_manifest(std::string_view text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return corrupt(where + ": invalid JSON: " + e.what() + " (re-run strata convert)");
  }
  try {
    if (!j.is_object() || j.value("format", std::string()) != kStoreFormatName) {
      return corrupt(where + ": not a strata weight store manifest (no \"format\": \"" +
                     std::string(kStoreFormatName) + "\")");
    }
    if (!j.contains("format_version") || !j["format_version"].is_number_integer()) {
      return corrupt(where + ": no integer \"format_version\"");
    }
    StoreManifest m;
    m.format_version = j["format_version"].get<int>();
    if (m.format_version != kStoreFormatVersion) {
      return unsupported(where + ": weight store format version " +
                         std::to_string(m.format_version) + ", but this strata reads version " +
                         std::to_string(kStoreFormatVersion) +
                         ": convert the model again with this strata (strata convert)");
    }
    if (j.value("alignment", uint64_t{0}) != kStoreAlignment) {
      return corrupt(where + ": alignment must be " + std::to_string(kStoreAlignment));
    }
    m.compression = j.value("compression", std::string("none"));
    m.source = j.value("source", std::string());
    std::map<std::string, uint64_t> file_bytes;
    for (const auto& f : j.at("files")) {
      StoreFile sf{f.at("name").get<std::string>(), f.at("bytes").get<uint64_t>()};
      if (!plain_file_name(sf.name)) {
        return corrupt(where + ": file name '" + sf.name + "' must be a plain file name");
      }
      if (!file_bytes.emplace(sf.name, sf.bytes).second) {
        return corrupt(where + ": file '" + sf.name + "' is listed twice");
      }
      m.files.push_back(std::move(sf));
    }
    std::set<std::string> names;
    std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> extents;
    for (const auto& e : j.at("tensors")) {
      StoreTensor t;
      t.name = e.at("name").get<std::string>();
      const std::string tw = where + ": tensor '" + t.name + "'";
      if (!names.insert(t.name).second) return corrupt(tw + " is listed twice");
      t.file = e.at("file").get<std::string>();
      if (!file_bytes.count(t.file)) return corrupt(tw + " is in unlisted file '" + t.file + "'");
      auto dt = dtype_from_name(e.at("dtype").get<std::string>());
      if (!dt || *dt == DType::kI32) return corrupt(tw + " has an unsupported dtype");
      t.dtype = *dt;
      t.shape = e.at("shape").get<Shape>();
      t.offset = e.at("offset").get<uint64_t>();
      t.bytes = e.at("bytes").get<uint64_t>();
      auto c = compression_from_name(e.at("compression").get<std::string>());
      if (!c) return corrupt(tw + " has unknown compression '" + e.at("compression").dump() + "'");
      t.compression = *c;
      auto h = parse_checksum_hex(e.at("xxhash64").get<std::string>());
      if (!h) return corrupt(tw + " has a malformed xxhash64 (want 16 hex digits)");
      t.xxhash64 = *h;
      auto want = stored_bytes(t.shape, t.dtype, t.compression);
      if (!want || *want != t.bytes) {
        return corrupt(tw + " says " + std::to_string(t.bytes) + " bytes, but a " +
                       shape_string(t.shape) + " " + std::string(dtype_name(t.dtype)) + " tensor (" +
                       std::string(compression_name(t.compression)) + ") takes " +
                       (want ? std::to_string(*want) : std::string("an impossible size")));
      }
      if (t.offset % kStoreAlignment != 0) {
        return corrupt(tw + " starts at offset " + std::to_string(t.offset) +
                       ", not a multiple of 4096");
      }
      if (t.offset + t.bytes > file_bytes[t.file]) {
        return corrupt(tw + " ends at byte " + std::to_string(t.offset + t.bytes) + " of '" +
                       t.file + "', which has " + std::to_string(file_bytes[t.file]));
      }
      extents[t.file].emplace_back(t.offset, t.offset + t.bytes);
      m.tensors.push_back(std::move(t));
    }
    for (auto& [file, ext] : extents) {
      std::sort(ext.begin(), ext.end());
      for (size_t i = 1; i < ext.size(); ++i) {
        if (ext[i].first < ext[i - 1].second) {
          return corrupt(where + ": two tensors overlap in '" + file + "' at offset " +
                         std::to_string(ext[i].first));
        }
      }
    }
    return m;
  } catch (const nlohmann::json::exception& e) {
    return corrupt(where + ": malformed manifest: " + e.what() + " (re-run strata convert)");
  }
}

}  // namespace strata::storage
