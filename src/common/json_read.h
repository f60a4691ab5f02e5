// Checked JSON reading: every JSON text strata reads (config.json, safetensors headers and index,
// tokenizer files, weight store manifests, policies, profiles, request lines) is parsed here, with
// limits on size and nesting depth; a number that overflows a double is an error naming the field
// that holds it; nothing throws. The field readers return a Status naming the source and the field.
// Files are opened only when they are regular files (a FIFO or a device is refused, never read).
// Pure functions apart from the file reads; thread safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace strata {

struct JsonLimits {
  uint64_t max_bytes = uint64_t{1} << 30;  // the text (or file) size
  int max_depth = 128;                     // nested arrays and objects
};

// Parses `text`; `source` names it in errors ("config.json", "line 7"). Errors are kCorrupt for a
// syntax error (with the byte offset), a number out of range (with the field, e.g.
// "field 'rope_scaling.factor'") or a text over the limits.
Result<nlohmann::json> parse_json(std::string_view text, const std::string& source,
                                  const JsonLimits& limits = {});

// The bytes of a regular file of at most `max_bytes`. A FIFO, socket, device or directory is
// refused with kInvalidArgument naming the path and what it is; a missing file is kNotFound.
Result<std::string> read_regular_file(const std::filesystem::path& path, uint64_t max_bytes);

// read_regular_file + parse_json; errors name the path.
Result<nlohmann::json> read_json_file(const std::filesystem::path& path, const JsonLimits& limits = {});

// Opens `path` read-only without blocking on a FIFO and checks that it is a regular file; returns
// the descriptor (the caller closes it). Errors as read_regular_file.
Result<int> open_regular_file(const std::filesystem::path& path);

// "a FIFO", "a directory", ... for the st_mode of a file that is not regular.
std::string file_kind(unsigned mode);

// A JSON number as an integer, or nullopt when it is not an integer-valued number in int64 range
// (7 and 7.0 are integers; 7.5, 1e300 and 2^64 are not).
std::optional<int64_t> json_to_int64(const nlohmann::json& v);

// Typed fields of an object. `where` names the object ("tokenizer.json: model"); errors say
// "<where>: field '<key>' must be ...". Absent and null fields take the fallback.
Result<std::string> json_string(const nlohmann::json& j, const char* key, const std::string& where);
Result<std::string> json_string_or(const nlohmann::json& j, const char* key, const std::string& fallback,
                                   const std::string& where);
Result<bool> json_bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& where);
Result<int64_t> json_int_or(const nlohmann::json& j, const char* key, int64_t fallback,
                            const std::string& where);
// An integer in [lo, hi].
Result<int64_t> json_int_in(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi,
                            const std::string& where);
Result<int64_t> json_int_in_or(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi,
                               int64_t fallback, const std::string& where);
// A non-negative integer up to 2^63 - 1, as uint64.
Result<uint64_t> json_uint(const nlohmann::json& j, const char* key, const std::string& where);
// A finite number in [lo, hi].
Result<double> json_number_in_or(const nlohmann::json& j, const char* key, double lo, double hi,
                                 double fallback, const std::string& where);

}  // namespace strata
