#include "offload_setup.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/json_read.h"
#include "common/units.h"
#include "cuda/device.h"
#include "machine_profile.h"
#include "measure_common.h"
#include "profile_cache.h"

namespace strata::tools {

namespace {
// Policy and profile files are a few KiB.
constexpr JsonLimits kProfileLimits{.max_bytes = 16 << 20, .max_depth = 32};
}  // namespace

namespace fs = std::filesystem;

uint64_t gpu_budget_from_free(uint64_t free_bytes) {
  return free_bytes > kGiB ? free_bytes - kGiB : 0;
}

uint64_t cpu_budget_from_available(uint64_t available_bytes) {
  return available_bytes - available_bytes / 10;
}

uint64_t disk_budget_from_free(uint64_t free_bytes) { return free_bytes / 100 * 95; }

Result<uint64_t> meminfo_available_bytes(std::string_view meminfo, const std::string& source) {
  constexpr std::string_view kKey = "MemAvailable:";
  size_t pos = 0;
  while (pos < meminfo.size()) {
    size_t end = meminfo.find('\n', pos);
    if (end == std::string_view::npos) end = meminfo.size();
    std::string_view line = meminfo.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front())))
      line.remove_prefix(1);
    uint64_t kib = 0;
    const auto [rest, ec] = std::from_chars(line.data(), line.data() + line.size(), kib);
    std::string_view unit(rest, static_cast<size_t>(line.data() + line.size() - rest));
    while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front())))
      unit.remove_prefix(1);
    while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back())))
      unit.remove_suffix(1);
    if (ec != std::errc() || rest == line.data() || unit != "kB" || kib > UINT64_MAX / 1024)
      return corrupt(source + ": MemAvailable is not '<number> kB': '" + std::string(line) + "'");
    return kib * 1024;
  }
  return not_found(source +
                   ": no MemAvailable line (Linux 3.14 or later reports it); give --cpu-mem");
}

Status apply_budget_flags(const BudgetFlags& flags, planner::Budgets* budgets) {
  const std::pair<const char*, std::pair<const std::string*, uint64_t*>> tiers[] = {
      {"--gpu-mem", {&flags.gpu, &budgets->gpu}},
      {"--cpu-mem", {&flags.cpu, &budgets->cpu}},
      {"--disk-mem", {&flags.disk, &budgets->disk}}};
  for (const auto& [flag, tier] : tiers) {
    if (tier.first->empty()) continue;
    Result<uint64_t> bytes = parse_bytes(*tier.first);
    if (!bytes.is_ok()) return bytes.status().with_context(flag);
    *tier.second = *bytes;
  }
  return Status::ok();
}

Result<planner::Budgets> resolve_budgets(const BudgetFlags& flags, int device,
                                         const fs::path& offload_dir) {
  planner::Budgets b;
  if (flags.gpu.empty()) {
    const cuda::DeviceQuery q = cuda::query_devices();
    auto it = std::find_if(q.devices.begin(), q.devices.end(),
                           [&](const auto& d) { return d.index == device; });
    if (it == q.devices.end())
      return unsupported("no CUDA device " + std::to_string(device) + " to size the GPU budget" +
                         (q.note.empty() ? "" : " (" + q.note + ")") +
                         "; the offloading engine needs a CUDA device");
    b.gpu = gpu_budget_from_free(it->free_memory);
  }
  if (flags.cpu.empty()) {
    std::ifstream in("/proc/meminfo");
    if (!in)
      return io_error("/proc/meminfo: cannot read it to size the DRAM budget; give --cpu-mem",
                      errno);
    std::stringstream text;
    text << in.rdbuf();
    STRATA_ASSIGN_OR_RETURN(uint64_t available,
                            meminfo_available_bytes(text.str(), "/proc/meminfo"));
    b.cpu = cpu_budget_from_available(available);
  }
  if (flags.disk.empty()) {
    std::error_code ec;
    fs::create_directories(offload_dir, ec);
    if (ec)
      return io_error(offload_dir.string() + ": cannot create the offload directory (" +
                          ec.message() + "); pass --offload-dir on a writable drive",
                      ec.value());
    struct statvfs st {};
    if (::statvfs(offload_dir.c_str(), &st) != 0)
      return io_error(offload_dir.string() + ": statvfs failed; give --disk-mem", errno);
    b.disk = disk_budget_from_free(static_cast<uint64_t>(st.f_bavail) * st.f_frsize);
  }
  STRATA_RETURN_IF_ERROR(apply_budget_flags(flags, &b));
  return b;
}

fs::path default_offload_dir() {
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  return tmp / "strata-offload";
}

Result<planner::HardwareProfile> load_hardware_profile(const std::string& arg) {
  if (!fs::is_regular_file(arg)) return planner::catalogue_hardware(arg);
  STRATA_ASSIGN_OR_RETURN(nlohmann::json j, read_json_file(arg, kProfileLimits));
  return planner::parse_hardware_profile(j, arg);
}

Result<planner::HardwareProfile> machine_hardware(const std::string& hardware_flag, int device,
                                                  const fs::path& offload_dir, Logger& log, bool quiet) {
  if (!hardware_flag.empty()) return load_hardware_profile(hardware_flag);
  std::error_code ec;
  fs::create_directories(offload_dir, ec);
  STRATA_ASSIGN_OR_RETURN(MachineKey key, machine_key(offload_dir, device));
  STRATA_ASSIGN_OR_RETURN(std::optional<CachedProfile> cached, load_cached_profile_entry(key));
  if (cached) {
    log.info("hardware: this machine's profile, " + cached->file.string() + (cached->quick ? " (quick)" : ""));
    return cached->profile;
  }
  log.info("hardware: no profile of this machine yet: measuring one (strata profile --quick, under a minute; "
           "`strata profile` measures more, --hardware FILE uses another)");
  MeasureOptions o;
  o.quick = true;
  o.offload_dir = offload_dir;
  o.device = device;
  if (!quiet) o.progress = stderr_progress("profile");
  auto measured = measure_machine(o, log);
  if (!measured.is_ok() || !gpu_measured(*measured)) {
    // A measurement that fails leaves the catalogue's entry for this card, when there is one.
    const std::string why = measured.is_ok() ? "no GPU could be measured" : measured.status().message();
    const cuda::DeviceQuery q = cuda::query_devices();
    for (const auto& d : q.devices) {
      if (d.index != device) continue;
      auto entry = planner::catalogue_hardware_for_cuda_name(d.name, d.total_memory);
      if (!entry.is_ok()) break;
      log.warn("hardware: measuring this machine failed (" + why + "); planning with the catalogue's " +
               entry->name + " instead (run `strata profile` to see why)");
      return entry;
    }
    return unsupported("hardware: measuring this machine failed (" + why +
                       ") and the catalogue has no entry for its GPU; pass --hardware FILE or NAME");
  }
  planner::HardwareProfile p = std::move(measured).value();
  auto stored = store_cached_profile(key, p, /*quick=*/true);
  if (stored.is_ok()) {
    log.info("hardware: profile cached in " + stored->string());
  } else {
    log.warn("hardware: the profile could not be cached (" + stored.status().message() + "); the next run measures again");
  }
  return p;
}

Status set_compress_choices(const std::string& value, planner::SearchOptions* options) {
  using planner::Compression;
  if (value == "none") {
    options->weight_compression = options->kv_compression = {Compression::kNone};
  } else if (value == "int4" || value == "int4-g64") {
    options->weight_compression = options->kv_compression = {Compression::kInt4};
  } else if (value == "auto") {
    options->weight_compression =
        options->kv_compression = {Compression::kNone, Compression::kInt4};
  } else {
    return invalid_argument("--compress must be none, int4 or auto, not '" + value + "'");
  }
  return Status::ok();
}

Result<planner::PlanResult> load_policy_file(const fs::path& path, const planner::ModelSpec& spec,
                                             const planner::HardwareProfile& hw,
                                             const planner::Budgets& budgets,
                                             const planner::Workload& workload) {
  const std::string name = path.string();
  Result<nlohmann::json> parsed = read_json_file(path, kProfileLimits);
  if (!parsed.is_ok()) {
    if (parsed.status().code() == StatusCode::kNotFound)
      return not_found(name + ": cannot open the policy file (write one with `strata plan -o FILE`)");
    return invalid_argument(parsed.status().message() + " (a policy is what `strata plan -o` writes)");
  }
  const nlohmann::json& j = *parsed;
  STRATA_ASSIGN_OR_RETURN(planner::Policy policy, planner::parse_policy(j, name));
  if (workload.prompt_len > 0) policy.workload = workload;
  auto r = planner::evaluate_policy(spec, policy, hw, budgets);
  if (!r.is_ok()) return r.status().with_context(name);
  return r;
}

}  // namespace strata::tools
