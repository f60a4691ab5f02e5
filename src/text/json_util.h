// Small helpers for reading nlohmann::json objects without exceptions escaping: each returns a
// Status naming `where` (a file and a JSON path) when a field is missing or has the wrong type.
// Pure functions; thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace strata::text {

// j[key] as a string; an error when absent or not a string.
Result<std::string> json_string(const nlohmann::json& j, const char* key, const std::string& where);
// j[key] as a string, or `fallback` when absent or null.
Result<std::string> json_string_or(const nlohmann::json& j, const char* key, const std::string& fallback,
                                   const std::string& where);
Result<bool> json_bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& where);
Result<int64_t> json_int_or(const nlohmann::json& j, const char* key, int64_t fallback,
                            const std::string& where);

// Reads and parses a JSON file; errors name the file and, for syntax errors, the byte offset.
Result<nlohmann::json> read_json_file(const std::string& path);

}  // namespace strata::text
