#include "profile_cache.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/json_read.h"
#include "cuda/device.h"

namespace strata::tools {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// FNV-1a, 64 bits: a file name that is the same for the same key in every build.
uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string key_text(const MachineKey& k) {
  return "gpu " +
         (k.gpu_uuid.empty() ? std::string("none") : k.gpu_uuid + " (" + k.gpu_name + ")") +
         ", cpu " + k.cpu_model + ", offload device " + k.offload_device;
}

Status stale(const std::filesystem::path& file, const std::string& why) {
  return corrupt("cached hardware profile " + file.string() + ": " + why +
                 ": delete it or run `strata profile --refresh` to measure this machine again");
}

}  // namespace

std::string cpu_model_from_cpuinfo(std::string_view cpuinfo) {
  for (const char* key : {"model name", "Hardware", "cpu model", "Processor"}) {
    size_t pos = 0;
    while (pos < cpuinfo.size()) {
      size_t end = cpuinfo.find('\n', pos);
      if (end == std::string_view::npos) end = cpuinfo.size();
      const std::string_view line = cpuinfo.substr(pos, end - pos);
      pos = end + 1;
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view name = line.substr(0, colon);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      if (name != key) continue;
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\r'))
        value.remove_suffix(1);
      if (!value.empty()) return std::string(value);
    }
  }
  return "unknown CPU";
}

Result<MachineKey> machine_key(const std::filesystem::path& offload_dir, int device) {
  MachineKey k;
  const cuda::DeviceQuery q = cuda::query_devices();
  if (device >= 0 && device < static_cast<int>(q.devices.size())) {
    k.gpu_uuid = q.devices[static_cast<size_t>(device)].uuid;
    k.gpu_name = q.devices[static_cast<size_t>(device)].name;
  }
  std::ifstream in("/proc/cpuinfo");
  std::stringstream text;
  text << in.rdbuf();
  k.cpu_model = cpu_model_from_cpuinfo(text.str());
  struct stat st {};
  if (::stat(offload_dir.c_str(), &st) != 0)
    return not_found("cannot stat the offload directory " + offload_dir.string() + ": " +
                     std::strerror(errno));
  k.offload_device = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  return k;
}

Result<std::filesystem::path> profile_cache_dir() {
  std::filesystem::path root;
  if (!env("STRATA_CACHE_DIR").empty())
    root = env("STRATA_CACHE_DIR");
  else if (!env("XDG_CACHE_HOME").empty())
    root = std::filesystem::path(env("XDG_CACHE_HOME")) / "strata";
  else if (!env("HOME").empty())
    root = std::filesystem::path(env("HOME")) / ".cache" / "strata";
  else
    return not_found(
        "no cache directory for hardware profiles: set XDG_CACHE_HOME or STRATA_CACHE_DIR (or "
        "HOME), "
        "or pass --no-cache");
  const std::filesystem::path dir = root / "profiles";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return io_error(
        "cannot create the profile cache directory " + dir.string() + ": " + ec.message(),
        ec.value());
  return dir;
}

std::filesystem::path cached_profile_path(const std::filesystem::path& dir, const MachineKey& key) {
  uint64_t h = fnv1a(key.gpu_uuid);
  for (const std::string* part : {&key.gpu_name, &key.cpu_model, &key.offload_device})
    h = fnv1a("\n" + *part, h);
  char name[40];
  std::snprintf(name, sizeof name, "profile-%016llx.json", static_cast<unsigned long long>(h));
  return dir / name;
}

Result<std::optional<CachedProfile>> load_cached_profile_entry(const MachineKey& key) {
  STRATA_ASSIGN_OR_RETURN(std::filesystem::path dir, profile_cache_dir());
  const std::filesystem::path file = cached_profile_path(dir, key);
  std::error_code ec;
  if (!std::filesystem::exists(file, ec) && !ec) return std::optional<CachedProfile>();
  Result<std::string> text = read_regular_file(file, 16 << 20);
  if (!text.is_ok()) return stale(file, "cannot be read (" + text.status().message() + ")");
  Result<nlohmann::json> doc = parse_json(*text, file.string());
  if (!doc.is_ok() || !doc->is_object()) return stale(file, "is not valid JSON");
  const nlohmann::json& j = *doc;
  // An older strata's profile lacks what this one measures: it is measured again (and replaced).
  if (j.contains("cache_format") && j["cache_format"].is_number_integer() &&
      j["cache_format"].get<int>() >= 1 && j["cache_format"].get<int>() < kProfileCacheFormat)
    return std::optional<CachedProfile>();
  if (!j.contains("cache_format") || !j["cache_format"].is_number_integer() ||
      j["cache_format"].get<int>() != kProfileCacheFormat)
    return stale(file, "was written in cache format " +
                           (j.contains("cache_format") ? j["cache_format"].dump() : "(none)") +
                           ", this strata reads format " + std::to_string(kProfileCacheFormat));
  auto parsed = planner::parse_hardware_profile(j, file.string());
  if (!parsed.is_ok())
    return stale(file, "is not a valid profile (" + parsed.status().message() + ")");
  if (!(parsed->machine == key))
    return stale(file, "describes another machine (" + key_text(parsed->machine) +
                           ", not this one's " + key_text(key) + ")");
  CachedProfile c;
  c.profile = std::move(parsed).value();
  c.quick = j.contains("quick") && j["quick"].is_boolean() && j["quick"].get<bool>();
  c.file = file;
  return std::optional<CachedProfile>(std::move(c));
}

Result<std::optional<planner::HardwareProfile>> load_cached_profile(const MachineKey& key) {
  STRATA_ASSIGN_OR_RETURN(auto entry, load_cached_profile_entry(key));
  if (!entry) return std::optional<planner::HardwareProfile>();
  return std::optional<planner::HardwareProfile>(std::move(entry->profile));
}

Result<std::filesystem::path> store_cached_profile(const MachineKey& key,
                                                   const planner::HardwareProfile& profile,
                                                   bool quick) {
  STRATA_ASSIGN_OR_RETURN(std::filesystem::path dir, profile_cache_dir());
  const std::filesystem::path file = cached_profile_path(dir, key);
  planner::HardwareProfile p = profile;
  p.machine = key;
  nlohmann::json j = planner::hardware_profile_to_json(p);
  j["cache_format"] = kProfileCacheFormat;
  j["quick"] = quick;
  const std::filesystem::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    out.close();
    if (!out) {
      const int err = errno;
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return io_error(
          "cannot write the cached hardware profile " + tmp.string() + ": " + std::strerror(err),
          err);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    const std::error_code failed = ec;
    std::filesystem::remove(tmp, ec);
    return io_error("cannot move the cached hardware profile into place as " + file.string() +
                        ": " + failed.message(),
                    failed.value());
  }
  return file;
}

}  // namespace strata::tools
