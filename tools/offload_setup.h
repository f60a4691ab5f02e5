// What `strata generate` and `strata bench` need before they can build the offloading engine: the
// memory budgets (detected on this machine, or given as --gpu-mem/--cpu-mem/--disk-mem), the
// hardware profile (a file, a catalogue name, or this machine's own, measured once and cached) and
// the policy (planned, or read from a file and checked against the budgets).
// The parsers and rules are pure functions; resolve_budgets reads /proc/meminfo, statvfs(2) and
// the CUDA driver. Thread safe. Units: bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "planner/hardware.h"
#include "planner/policy.h"
#include "planner/search.h"

namespace strata::tools {

// The budget flags as the user wrote them ("14GiB", "512MB"); "" = detect that tier.
struct BudgetFlags {
  std::string gpu, cpu, disk;
};

// The detection rules: the GPU's free memory less 1 GiB for the CUDA context and cuBLAS
// workspaces; the DRAM the kernel calls available (MemAvailable) less 10% for strata's own heap;
// 95% of the offload directory's free space. Each is 0 when the margin exceeds what there is.
uint64_t gpu_budget_from_free(uint64_t free_bytes);
uint64_t cpu_budget_from_available(uint64_t available_bytes);
uint64_t disk_budget_from_free(uint64_t free_bytes);

// MemAvailable of a /proc/meminfo text, in bytes ("MemAvailable:   123456 kB"); `source` names
// the text in errors.
Result<uint64_t> meminfo_available_bytes(std::string_view meminfo, const std::string& source);

// Replaces the tiers the flags name; errors name the flag ("--gpu-mem: ...").
Status apply_budget_flags(const BudgetFlags& flags, planner::Budgets* budgets);

// Budgets for CUDA device `device` with disk in `offload_dir` (created if missing): each tier a
// flag does not give is detected with the rules above. kUnsupported when the GPU tier must be
// detected and there is no such CUDA device.
Result<planner::Budgets> resolve_budgets(const BudgetFlags& flags, int device,
                                         const std::filesystem::path& offload_dir);

// The default offload directory: strata-offload under the system temporary directory.
std::filesystem::path default_offload_dir();

// A hardware profile from a file written by `strata profile`, or a catalogue name.
Result<planner::HardwareProfile> load_hardware_profile(const std::string& name_or_file);
// The profile a run on CUDA device `device` plans with, the disk tier in `offload_dir`: the
// --hardware flag's (a file or a catalogue name) when given; else this machine's cached profile
// (`strata profile`); else a quick profile measured now (under a minute, progress on stderr
// unless `quiet`) and cached for the next run; should measuring fail, the catalogue's entry for the
// card (by the name CUDA reports), with a warning. The catalogue is otherwise for machines one
// does not have (`strata plan`, `strata capacity`).
Result<planner::HardwareProfile> machine_hardware(const std::string& hardware_flag, int device,
                                                  const std::filesystem::path& offload_dir, Logger& log,
                                                  bool quiet);

// Which int4-g64 compressions --compress lets the search try: "none" (fp16 only), "int4" (weights
// and KV compressed) or "auto" (each either way).
Status set_compress_choices(const std::string& value, planner::SearchOptions* options);

// Reads a policy file, parses it (planner::parse_policy) and evaluates it for `spec` on `hw`
// within `budgets`. `workload`, when its prompt_len is above 0, replaces the file's. Every error
// names the file; a policy that does not fit says which tier is short.
Result<planner::PlanResult> load_policy_file(const std::filesystem::path& path,
                                             const planner::ModelSpec& spec,
                                             const planner::HardwareProfile& hw,
                                             const planner::Budgets& budgets,
                                             const planner::Workload& workload);

}  // namespace strata::tools
