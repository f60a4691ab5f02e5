// strata profile: measures this machine for the planner (tools/machine_profile.h: DRAM and CPU
// rates, CPU attention per call, the offload disk's requests, and with a GPU its links, copies,
// linear layers by rows and the offloading engine's fixed costs), writes the profile JSON, and
// keeps it in the per-machine cache (tools/profile_cache.h) that the other commands read. A cached
// profile of this machine is reused unless --refresh (a quick one only for --quick). --topology
// prints the NUMA/PCIe topology hwloc sees.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/log.h"
#include "common/units.h"
#include "cuda/device.h"
#include "machine_profile.h"
#include "planner/hardware.h"
#include "profile_cache.h"
#include "storage/topology.h"

namespace strata::tools {

namespace {

struct ProfileArgs {
  std::string output = "hardware.json", dir = ".", name, assume_gpu;
  std::string disk_bytes, dram_bytes;
  int device = 0, threads = 0;
  bool topology = false, skip_disk = false, skip_gpu = false, quick = false, refresh = false,
       no_cache = false;
};

Status write_profile(const nlohmann::json& j, const std::string& output) {
  std::printf("%s\n", j.dump(2).c_str());
  std::ofstream out(output);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return io_error("cannot write " + output, errno);
  return Status::ok();
}

// The cached profile of this machine when it may stand for a new measurement, else nullopt.
Result<std::optional<CachedProfile>> reusable_cached(const ProfileArgs& a) {
  if (a.no_cache || a.refresh || a.skip_gpu || a.skip_disk) return std::optional<CachedProfile>();
  STRATA_ASSIGN_OR_RETURN(MachineKey key, machine_key(a.dir, a.device));
  if (key.gpu_uuid.empty())
    return std::optional<CachedProfile>();  // nothing measured without a GPU is cached
  STRATA_ASSIGN_OR_RETURN(auto entry, load_cached_profile_entry(key));
  if (entry && entry->quick && !a.quick)
    return std::optional<CachedProfile>();  // a full run was asked for
  return entry;
}

Result<MeasureOptions> measure_options(const ProfileArgs& a) {
  MeasureOptions o;
  o.quick = a.quick;
  o.offload_dir = a.dir;
  o.device = a.device;
  o.skip_gpu = a.skip_gpu;
  o.skip_disk = a.skip_disk;
  o.threads = a.threads;
  o.name = a.name;
  if (!a.disk_bytes.empty()) {
    STRATA_ASSIGN_OR_RETURN(o.disk_test_bytes, parse_bytes(a.disk_bytes));
  }
  if (!a.dram_bytes.empty()) {
    STRATA_ASSIGN_OR_RETURN(o.dram_test_bytes, parse_bytes(a.dram_bytes));
  }
  o.progress = stderr_progress("profile");
  return o;
}

Status run_profile(const ProfileArgs& a) {
  Logger log(LogLevel::kWarn);
  if (a.topology) {
    const cuda::DeviceQuery devices = cuda::query_devices();
    const std::string bus = devices.devices.empty() ? "" : devices.devices[0].pci_bus_id;
    STRATA_ASSIGN_OR_RETURN(storage::Topology topo, storage::query_topology(bus));
    std::printf("%s\n", storage::format_topology(topo).c_str());
  }
  STRATA_ASSIGN_OR_RETURN(auto cached, reusable_cached(a));
  if (cached) {
    if (!a.name.empty()) cached->profile.name = a.name;
    STRATA_RETURN_IF_ERROR(
        write_profile(planner::hardware_profile_to_json(cached->profile), a.output));
    std::fprintf(
        stderr,
        "wrote %s from the cached profile of this machine %s (measured in %s mode; --refresh "
        "measures again)\n",
        a.output.c_str(), cached->file.c_str(), cached->quick ? "quick" : "full");
    return Status::ok();
  }

  STRATA_ASSIGN_OR_RETURN(MeasureOptions o, measure_options(a));
  STRATA_ASSIGN_OR_RETURN(planner::HardwareProfile p, measure_machine(o, log));
  const bool measured_gpu = gpu_measured(p);
  std::string cached_as;
  if (!a.no_cache && measured_gpu && disk_measured(p)) {
    STRATA_ASSIGN_OR_RETURN(std::filesystem::path file,
                            store_cached_profile(p.machine, p, a.quick));
    cached_as = file.string();
  }
  if (!measured_gpu && !a.assume_gpu.empty()) {
    STRATA_ASSIGN_OR_RETURN(planner::HardwareProfile assumed,
                            planner::catalogue_hardware(a.assume_gpu));
    p.gpu = assumed.gpu;
    p.links = assumed.links;
    p.source += "\nGPU and PCIe figures copied from the catalogue entry " + assumed.name +
                " (--assume-gpu)";
  }
  nlohmann::json j = planner::hardware_profile_to_json(p);
  const bool have_gpu = measured_gpu || !a.assume_gpu.empty();
  if (!have_gpu) {
    j.erase("gpu");
    j.erase("links");
  }
  if (!disk_measured(p)) {
    j["disk"].erase("read_gbps");
    j["disk"].erase("write_gbps");
  }
  STRATA_RETURN_IF_ERROR(write_profile(j, a.output));
  std::fprintf(stderr, "wrote %s%s%s\n", a.output.c_str(),
               have_gpu
                   ? ""
                   : " (without GPU figures: `strata plan` needs them; rerun on the GPU machine or "
                     "add --assume-gpu NAME to take them from the catalogue)",
               cached_as.empty() ? "" : ("; cached as " + cached_as).c_str());
  return Status::ok();
}

}  // namespace

void register_profile(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("profile", "Measure this machine and write a hardware profile");
  static ProfileArgs a;
  cmd->add_option("-o,--output", a.output, "where to write the profile (default hardware.json)");
  cmd->add_option("--dir", a.dir, "directory on the offload disk to measure (default .)");
  cmd->add_option("--name", a.name, "profile name (default: the host name)");
  cmd->add_flag("--quick", a.quick,
                "fewer points and repetitions (under a minute on a GPU machine)");
  cmd->add_flag("--refresh", a.refresh,
                "measure even when the cache holds a profile of this machine, and replace it");
  cmd->add_flag("--no-cache", a.no_cache, "neither read nor write the per-machine profile cache");
  cmd->add_option("--device", a.device, "CUDA device to measure (default 0)");
  cmd->add_option("--threads", a.threads, "CPU threads (default: every core)");
  cmd->add_option("--disk-test-bytes", a.disk_bytes,
                  "size of the disk test file (default 256MiB quick, 1GiB full)");
  cmd->add_option("--dram-test-bytes", a.dram_bytes,
                  "size of the DRAM test buffer (default 256MiB quick, 1GiB full)");
  cmd->add_option(
      "--assume-gpu", a.assume_gpu,
      "without GPU figures: take GPU and PCIe figures from this catalogue entry (never cached)");
  cmd->add_flag("--skip-gpu", a.skip_gpu, "do not measure the GPU (the profile is not cached)");
  cmd->add_flag("--skip-disk", a.skip_disk, "do not measure the disk (the profile is not cached)");
  cmd->add_flag("--topology", a.topology, "print the NUMA and PCIe topology (hwloc)");
  cmd->callback([exit_code] { *exit_code = report("profile", run_profile(a)); });
}

}  // namespace strata::tools
