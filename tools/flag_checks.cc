#include "flag_checks.h"

#include <cmath>

#include <unistd.h>

#include "common/json_read.h"
#include "common/units.h"

namespace strata::tools {

namespace fs = std::filesystem;

namespace {

Status bad(const char* flag, const std::string& allowed, const std::string& got) {
  return invalid_argument(std::string(flag) + " must be " + allowed + " (got '" + got + "')");
}

}  // namespace

Status check_bytes_flag(const char* flag, const std::string& value, bool allow_zero) {
  if (value.empty()) return Status::ok();
  Result<uint64_t> bytes = parse_bytes(value);
  if (!bytes.is_ok()) return bytes.status().with_context(flag);
  if (*bytes == 0 && !allow_zero) return bad(flag, "a byte size above zero, such as 24GiB or 512MiB", value);
  return Status::ok();
}

Status check_budget_flags(const std::string& gpu, const std::string& cpu, const std::string& disk) {
  STRATA_RETURN_IF_ERROR(check_bytes_flag("--gpu-mem", gpu));
  STRATA_RETURN_IF_ERROR(check_bytes_flag("--cpu-mem", cpu));
  return check_bytes_flag("--disk-mem", disk, /*allow_zero=*/true);
}

Status check_device_flag(const std::string& value) {
  if (value == "auto" || value == "cpu" || value == "cuda" || value == "gpu") return Status::ok();
  if (value.rfind("cuda:", 0) == 0) {
    const std::string index = value.substr(5);
    if (!index.empty() && index.size() <= 4 && index.find_first_not_of("0123456789") == std::string::npos)
      return Status::ok();
  }
  return bad("--device", "auto, cpu, cuda or cuda:N (N a GPU index)", value);
}

Status check_compress_flag(const std::string& value) {
  if (value == "none" || value == "int4" || value == "int4-g64" || value == "auto") return Status::ok();
  return bad("--compress", "none, int4 or auto", value);
}

Status check_policy_flag(const std::string& value) {
  if (value == "auto" || value == "none") return Status::ok();
  Result<int> fd = open_regular_file(value);
  if (!fd.is_ok()) {
    return invalid_argument("--policy must be auto, none or a policy file (strata plan -o FILE): " +
                            fd.status().message());
  }
  ::close(*fd);
  return Status::ok();
}

Status check_sampling_flags(float temperature, float top_p, int top_k) {
  if (!std::isfinite(temperature) || temperature < 0 || temperature > 1e6f)
    return bad("--temperature", "a number in [0, 1e6] (0 = greedy)", std::to_string(temperature));
  if (!(top_p > 0 && top_p <= 1)) return bad("--top-p", "a number in (0, 1] (1 = no limit)", std::to_string(top_p));
  if (top_k < 0) return bad("--top-k", "an integer >= 0 (0 = no limit)", std::to_string(top_k));
  return Status::ok();
}

Status check_dir_flag(const char* flag, const fs::path& dir) {
  std::error_code ec;
  const std::string d = dir.string();
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return invalid_argument(std::string(flag) + " " + d + ": not a directory");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      return invalid_argument(std::string(flag) + " " + d + ": the directory is not writable");
    return Status::ok();
  }
  fs::path parent = dir.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    return invalid_argument(std::string(flag) + " " + d + ": no such directory, and its parent " + parent.string() +
                            " does not exist either (create it, or choose another directory)");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    return invalid_argument(std::string(flag) + " " + d + ": does not exist and cannot be created in " +
                            parent.string() + " (not writable)");
  return Status::ok();
}

Status check_output_file_flag(const char* flag, const fs::path& file) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) return invalid_argument(std::string(flag) + " " + file.string() + ": is a directory");
  fs::path parent = file.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    return invalid_argument(std::string(flag) + " " + file.string() + ": the directory " + parent.string() +
                            " does not exist");
  if (::access(parent.c_str(), W_OK) != 0)
    return invalid_argument(std::string(flag) + " " + file.string() + ": the directory " + parent.string() +
                            " is not writable");
  return Status::ok();
}

}  // namespace strata::tools
