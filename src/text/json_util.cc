#include "text/json_util.h"

#include <fstream>
#include <sstream>

namespace strata::text {

Result<std::string> json_string(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) return invalid_argument(where + ": missing field '" + key + "'");
  const auto& v = j.at(key);
  if (!v.is_string()) return invalid_argument(where + ": field '" + key + "' must be a string");
  return v.get<std::string>();
}

Result<std::string> json_string_or(const nlohmann::json& j, const char* key, const std::string& fallback,
                                   const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_string()) return invalid_argument(where + ": field '" + key + "' must be a string");
  return j.at(key).get<std::string>();
}

Result<bool> json_bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_boolean()) return invalid_argument(where + ": field '" + key + "' must be true or false");
  return j.at(key).get<bool>();
}

Result<int64_t> json_int_or(const nlohmann::json& j, const char* key, int64_t fallback,
                            const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  if (!j.at(key).is_number_integer()) return invalid_argument(where + ": field '" + key + "' must be an integer");
  return j.at(key).get<int64_t>();
}

Result<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(path + ": cannot open the file");
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return corrupt(path + ": not valid JSON");
  return j;
}

}  // namespace strata::text
