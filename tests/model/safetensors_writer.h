// Test helper: writes .safetensors files by hand (valid ones, and broken ones on purpose).
// Header-only, used by the model tests; not part of the library.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace strata::testing {

struct TensorBlob {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  std::string data;  // raw little-endian bytes
};

inline std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// Lays the blobs out back to back; `data` receives the data section.
inline nlohmann::json safetensors_header(const std::vector<TensorBlob>& blobs, std::string& data) {
  nlohmann::json h = nlohmann::json::object();
  data.clear();
  for (const TensorBlob& b : blobs) {
    h[b.name] = {{"dtype", b.dtype},
                 {"shape", b.shape},
                 {"data_offsets", {data.size(), data.size() + b.data.size()}}};
    data += b.data;
  }
  return h;
}

// Writes the length prefix (or `declared_len` instead of the real one), the header text, then data.
inline void write_safetensors_raw(const std::filesystem::path& path, const std::string& header,
                                  const std::string& data,
                                  std::optional<uint64_t> declared_len = std::nullopt) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  uint64_t n = declared_len.value_or(header.size());
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline void write_safetensors(const std::filesystem::path& path,
                              const std::vector<TensorBlob>& blobs,
                              const nlohmann::json& metadata = nullptr) {
  std::string data;
  nlohmann::json h = safetensors_header(blobs, data);
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string text = h.dump();
  while (text.size() % 8 != 0) text += ' ';  // the format pads the header with spaces
  write_safetensors_raw(path, text, data);
}

// A blob of `shape` in F32 whose element i is base + i.
inline TensorBlob f32_blob(const std::string& name, std::vector<int64_t> shape, float base = 0) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = base + static_cast<float>(i);
  return {name, "F32", std::move(shape), f32_bytes(v)};
}

}  // namespace strata::testing
