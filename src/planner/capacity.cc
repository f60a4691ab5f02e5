#include "planner/capacity.h"

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/units.h"

namespace strata::planner {

using nlohmann::json;

namespace {

Result<double> number(const json& j, const char* key, const std::string& where, double min) {
  if (!j.contains(key) || !j.at(key).is_number() || j.at(key).get<double>() < min)
    return invalid_argument(where + "." + key + ": missing or not a number >= " + std::to_string(min));
  return j.at(key).get<double>();
}

json parse_embedded(const char* path) {
  auto text = embedded_policy_file(path);
  STRATA_CHECK(text.is_ok(), text.status().to_string());
  json j = json::parse(*text, nullptr, false);
  STRATA_CHECK(!j.is_discarded(), std::string("policies/") + path + " is not valid JSON");
  return j;
}

}  // namespace

Result<std::vector<DiskOption>> parse_disk_options(const json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("disks") || !j.at("disks").is_array())
    return invalid_argument(source + ": expected an object with a \"disks\" array");
  std::vector<DiskOption> out;
  for (size_t i = 0; i < j.at("disks").size(); ++i) {
    const json& d = j.at("disks")[i];
    const std::string where = source + ": disks[" + std::to_string(i) + "]";
    if (!d.is_object() || !d.contains("name") || !d.at("name").is_string())
      return invalid_argument(where + ".name: missing (a string)");
    DiskOption o;
    o.name = d.at("name").get<std::string>();
    STRATA_ASSIGN_OR_RETURN(double gib, number(d, "capacity_gib", where, 0));
    o.capacity_bytes = static_cast<uint64_t>(gib * static_cast<double>(kGiB));
    STRATA_ASSIGN_OR_RETURN(o.read_gbps, number(d, "read_gbps", where, 1e-6));
    STRATA_ASSIGN_OR_RETURN(o.write_gbps, number(d, "write_gbps", where, 1e-6));
    out.push_back(std::move(o));
  }
  if (out.empty()) return invalid_argument(source + ": disks: empty");
  return out;
}

Result<Prices> parse_prices(const json& j, const std::string& source) {
  if (!j.is_object()) return invalid_argument(source + ": prices must be a JSON object");
  Prices p;
  if (j.contains("source") && j.at("source").is_string()) p.source = j.at("source").get<std::string>();
  if (j.contains("currency") && j.at("currency").is_string()) p.currency = j.at("currency").get<std::string>();
  for (const char* key : {"gpu_per_hour", "disk_per_hour"}) {
    if (!j.contains(key)) continue;
    if (!j.at(key).is_object()) return invalid_argument(source + ": " + key + ": must be an object of prices");
    auto& dst = std::string_view(key) == "gpu_per_hour" ? p.gpu_per_hour : p.disk_per_hour;
    for (auto& [name, v] : j.at(key).items()) {
      if (!v.is_number() || v.get<double>() < 0)
        return invalid_argument(source + ": " + key + "." + name + ": must be a price >= 0");
      dst[name] = v.get<double>();
    }
  }
  if (j.contains("dram_gib_per_hour")) {
    STRATA_ASSIGN_OR_RETURN(p.dram_gib_per_hour, number(j, "dram_gib_per_hour", source, 0));
  }
  return p;
}

std::vector<DiskOption> default_disk_options() {
  auto d = parse_disk_options(parse_embedded("capacity/disks.json"), "policies/capacity/disks.json");
  STRATA_CHECK(d.is_ok(), d.status().to_string());
  return *d;
}

Prices default_prices() {
  auto p = parse_prices(parse_embedded("capacity/prices.json"), "policies/capacity/prices.json");
  STRATA_CHECK(p.is_ok(), p.status().to_string());
  return *p;
}

Result<CapacityReport> sweep_capacity(const ModelSpec& spec, const Workload& w,
                                      const std::vector<HardwareProfile>& machines,
                                      const CapacityOptions& options) {
  if (w.requests <= 0) return invalid_argument("capacity planning needs a job: give the request count");
  std::vector<uint64_t> drams = options.dram_sizes;
  if (drams.empty()) drams = {64 * kGiB, 128 * kGiB, 256 * kGiB, 512 * kGiB, 1024 * kGiB};
  std::vector<DiskOption> disks = options.disks.empty() ? default_disk_options() : options.disks;
  CapacityReport r;
  r.model = spec.name;
  r.workload = w;
  r.prices_source = options.prices.source;
  r.currency = options.prices.currency;
  const double job_tokens = static_cast<double>(w.requests) * static_cast<double>(w.gen_len);
  // One configuration planned: feasible or why not, its policy, time and rate over the whole job.
  auto plan_point = [&](const HardwareProfile& m, uint64_t dram, const DiskOption& disk) {
    HardwareProfile hw = m;
    hw.cpu.dram_bytes = dram;
    hw.disk = {disk.name, disk.capacity_bytes, disk.read_gbps, disk.write_gbps};
    CapacityPoint pt;
    pt.machine = m.name;
    pt.gpu = m.gpu.name;
    pt.dram_bytes = dram;
    pt.disk = disk.name;
    auto plan = plan_policy(spec, w, hw, default_budgets(hw), options.search);
    if (plan.is_ok()) {
      pt.feasible = true;
      pt.policy = plan->policy;
      pt.job_s = plan->policy.predicted.job_s;
      pt.tokens_per_s = pt.job_s > 0 ? job_tokens / pt.job_s : 0;
      pt.bottleneck = plan->policy.predicted.bottleneck;
    } else {
      pt.reason = plan.status().message();
    }
    return pt;
  };
  const DiskOption no_disk{"none", 0, 1, 1};
  for (const auto& m : machines) {
    for (uint64_t dram : drams) {
      // A machine with a disk can leave it unused: no disk option may plan worse than none.
      const CapacityPoint without = plan_point(m, dram, no_disk);
      for (const auto& disk : disks) {
        CapacityPoint pt = plan_point(m, dram, disk);
        if (without.feasible && (!pt.feasible || without.job_s < pt.job_s)) {
          const std::string name = pt.disk;
          pt = without;
          pt.disk = name;
          pt.disk_unused = disk.capacity_bytes > 0;
        }
        auto gpu_price = options.prices.gpu_per_hour.find(m.name);
        auto disk_price = options.prices.disk_per_hour.find(disk.name);
        if (gpu_price != options.prices.gpu_per_hour.end() && disk_price != options.prices.disk_per_hour.end()) {
          pt.price_per_hour = gpu_price->second + disk_price->second +
                              options.prices.dram_gib_per_hour * static_cast<double>(dram) / static_cast<double>(kGiB);
          pt.cost = pt.job_s / 3600 * pt.price_per_hour;
        }
        r.points.push_back(std::move(pt));
      }
    }
  }
  return r;
}

Result<CapacityReport> sweep_capacity_at_scale(const ModelSpec& spec, const Workload& w,
                                               const std::vector<HardwareProfile>& machines,
                                               const CapacityOptions& options, const Scale& scale) {
  if (scale.gpus_per_machine < 1 || scale.machines < 1)
    return invalid_argument("--gpus-per-machine and --machines must be >= 1");
  if (w.requests <= 0) return invalid_argument("capacity planning needs a job: give the request count");
  const int g = scale.gpus_per_machine, n = scale.gpus();
  // Each engine: its shard of the requests, its share of the machine's DRAM and disk.
  Workload share = w;
  share.requests = (w.requests + n - 1) / n;
  CapacityOptions o = options;
  if (o.dram_sizes.empty()) o.dram_sizes = {64 * kGiB, 128 * kGiB, 256 * kGiB, 512 * kGiB, 1024 * kGiB};
  if (o.disks.empty()) o.disks = default_disk_options();
  for (uint64_t& d : o.dram_sizes) d /= static_cast<uint64_t>(g);
  for (DiskOption& d : o.disks) {
    d.capacity_bytes /= static_cast<uint64_t>(g);
    d.read_gbps /= g;
    d.write_gbps /= g;
  }
  STRATA_ASSIGN_OR_RETURN(CapacityReport r, sweep_capacity(spec, share, machines, o));
  r.workload = w;
  r.scale = scale;
  const double job_tokens = static_cast<double>(w.requests) * static_cast<double>(w.gen_len);
  for (CapacityPoint& p : r.points) {
    p.dram_bytes *= static_cast<uint64_t>(g);  // the machine's
    if (p.feasible) p.tokens_per_s = p.job_s > 0 ? job_tokens / p.job_s : 0;
    if (p.price_per_hour > 0) {
      // The engine's price holds its GPU, its DRAM share and a whole disk: a machine has G GPUs,
      // all its DRAM and one disk.
      auto disk = options.prices.disk_per_hour.find(p.disk);
      const double disk_price = disk == options.prices.disk_per_hour.end() ? 0 : disk->second;
      p.price_per_hour = scale.machines * (g * p.price_per_hour - (g - 1) * disk_price);
      p.cost = p.job_s / 3600 * p.price_per_hour;
    }
  }
  return r;
}

json capacity_json(const CapacityReport& r) {
  json points = json::array();
  for (const auto& p : r.points) {
    json j = {{"machine", p.machine},
              {"gpu", p.gpu},
              {"dram_gib", static_cast<double>(p.dram_bytes) / static_cast<double>(kGiB)},
              {"disk", p.disk},
              {"feasible", p.feasible}};
    if (p.feasible) {
      j["tokens_per_s"] = p.tokens_per_s;
      j["job_s"] = p.job_s;
      j["bottleneck"] = p.bottleneck;
      if (p.disk_unused) j["disk_unused"] = true;
      j["policy"] = policy_to_json(p.policy);
    } else {
      j["reason"] = p.reason;
    }
    if (p.price_per_hour > 0) {
      j["price_per_hour"] = p.price_per_hour;
      if (p.feasible) j["cost"] = p.cost;
    }
    points.push_back(std::move(j));
  }
  return {{"model", r.model},
          {"prompt_len", r.workload.prompt_len},
          {"gen_len", r.workload.gen_len},
          {"requests", r.workload.requests},
          {"currency", r.currency},
          {"prices_source", r.prices_source},
          {"scale", {{"gpus_per_machine", r.scale.gpus_per_machine}, {"machines", r.scale.machines}}},
          {"points", points}};
}

}  // namespace strata::planner
