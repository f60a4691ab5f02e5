// Capacity planning: for one model and job, sweep machines (catalogue GPUs x DRAM sizes x disks),
// plan each with the policy search, and report throughput, time and cost to finish the job, and
// the binding bottleneck, as Markdown, a self-contained HTML page with SVG charts, and JSON.
// Disk options and prices come from policies/capacity/*.json (compiled in) or the caller.
// Pure: no I/O, no threads. Units: bytes, seconds, currency per hour.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "planner/hardware.h"
#include "planner/model_spec.h"
#include "planner/policy.h"
#include "planner/search.h"

namespace strata::planner {

struct DiskOption {
  std::string name;
  uint64_t capacity_bytes = 0;  // 0: no disk tier
  double read_gbps = 0, write_gbps = 0;
};

struct Prices {
  std::string source, currency = "USD";
  std::map<std::string, double> gpu_per_hour;   // by hardware profile name
  double dram_gib_per_hour = 0;
  std::map<std::string, double> disk_per_hour;  // by disk option name
};

Result<std::vector<DiskOption>> parse_disk_options(const nlohmann::json& j, const std::string& source);
Result<Prices> parse_prices(const nlohmann::json& j, const std::string& source);
// The compiled-in policies/capacity/disks.json and prices.json.
std::vector<DiskOption> default_disk_options();
Prices default_prices();

struct CapacityOptions {
  std::vector<uint64_t> dram_sizes;  // empty: 64, 128, 256, 512, 1024 GiB
  std::vector<DiskOption> disks;     // empty: default_disk_options()
  Prices prices;
  SearchOptions search;
};

struct CapacityPoint {
  std::string machine;   // hardware profile name
  std::string gpu;       // GPU model name
  uint64_t dram_bytes = 0;
  std::string disk;
  bool feasible = false;
  std::string reason;    // why not, when infeasible
  double tokens_per_s = 0;  // generated tokens of the whole job over its time (job_s)
  double job_s = 0;
  bool disk_unused = false;  // the plan without the disk was at least as fast, and is this one
  double price_per_hour = 0;  // 0 when a price is missing
  double cost = 0;            // job hours x price per hour
  std::string bottleneck;
  Policy policy;
};

// A job spread over `machines` machines of `gpus_per_machine` GPUs each, one engine per GPU on its
// shard of the requests (ceil(requests / GPUs) each). The GPUs of a machine share its DRAM and its
// disk: each engine plans with 1/G of the machine's DRAM, disk capacity and disk bandwidth.
struct Scale {
  int gpus_per_machine = 1;
  int machines = 1;
  int gpus() const { return gpus_per_machine * machines; }
};

struct CapacityReport {
  std::string model;
  Workload workload;
  Scale scale;
  std::string prices_source, currency;
  std::vector<CapacityPoint> points;
};

// Plans every machine x DRAM size x disk. A disk is never worse than none: where the plan without
// it is faster, that plan stands for the configuration (disk_unused). The job needs
// workload.requests > 0.
Result<CapacityReport> sweep_capacity(const ModelSpec& spec, const Workload& workload,
                                      const std::vector<HardwareProfile>& machines,
                                      const CapacityOptions& options);

// The sweep at `scale`: DRAM sizes (and disks) are per machine; every point's time is that of one
// engine on its shard (all run at once), its throughput the whole job's, its price per hour that
// of all the machines (G GPUs + the machine's DRAM + one disk each) and its cost that price over
// the time. Scale {1, 1} is sweep_capacity.
Result<CapacityReport> sweep_capacity_at_scale(const ModelSpec& spec, const Workload& workload,
                                               const std::vector<HardwareProfile>& machines,
                                               const CapacityOptions& options, const Scale& scale);

std::string capacity_markdown(const CapacityReport& report);
std::string capacity_html(const CapacityReport& report);
nlohmann::json capacity_json(const CapacityReport& report);

}  // namespace strata::planner
