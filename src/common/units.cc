#include "common/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace strata {

Result<uint64_t> parse_bytes(std::string_view text) {
  std::string s(text);
  const char* begin = s.c_str();
  char* end = nullptr;
  double value = std::strtod(begin, &end);
  if (end == begin || value < 0 || !std::isfinite(value))
    return invalid_argument("'" + s + "' is not a byte size (try 24GiB, 512MiB or 4096)");
  std::string suffix(end);
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.front()))) suffix.erase(0, 1);
  for (auto& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 0;
  if (suffix.empty() || suffix == "B") mult = 1;
  else if (suffix == "K" || suffix == "KIB") mult = 1024.0;
  else if (suffix == "M" || suffix == "MIB") mult = 1024.0 * 1024;
  else if (suffix == "G" || suffix == "GIB") mult = 1024.0 * 1024 * 1024;
  else if (suffix == "T" || suffix == "TIB") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (suffix == "KB") mult = 1e3;
  else if (suffix == "MB") mult = 1e6;
  else if (suffix == "GB") mult = 1e9;
  else if (suffix == "TB") mult = 1e12;
  else return invalid_argument("'" + s + "': unknown size suffix '" + suffix + "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
  double bytes = value * mult;
  if (bytes > 1.8e19) return invalid_argument("'" + s + "' is too large");
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_bytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[u]);
  return buf;
}

}  // namespace strata
