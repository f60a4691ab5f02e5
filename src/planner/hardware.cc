#include "planner/hardware.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "planner/embedded_data.h"

namespace strata::planner {

using nlohmann::json;

double GpuProfile::dequant_rate() const {
  if (dequant_gelems > 0) return dequant_gelems * 1e9;
  return hbm_gbps * 1e9 / 0.5625;
}

double CpuProfile::dequant_rate() const {
  if (dequant_gelems > 0) return dequant_gelems * 1e9;
  return attention_gflops * 1e9 * 16;
}

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Reads fields of one JSON object, naming "<source>: <section>.<field>" in every error.
class Fields {
 public:
  Fields(const json& j, std::string source, std::string section)
      : j_(j), source_(std::move(source)), section_(std::move(section)) {}

  Status check_object() const {
    if (!j_.is_object()) return error("", "must be an object");
    return Status::ok();
  }

  Result<double> positive(const char* key, bool required = true, double fallback = 0) const {
    if (!j_.contains(key)) {
      if (required) return error(key, "is missing (a positive number)");
      return fallback;
    }
    const json& v = j_.at(key);
    if (!v.is_number() || !(v.get<double>() > 0))
      return error(key, "must be a positive number, not " + v.dump());
    return v.get<double>();
  }

  Result<std::string> text(const char* key, bool required) const {
    if (!j_.contains(key)) {
      if (required) return error(key, "is missing (a string)");
      return std::string();
    }
    if (!j_.at(key).is_string()) return error(key, "must be a string");
    return j_.at(key).get<std::string>();
  }

  Status error(const std::string& key, const std::string& what) const {
    std::string field = section_.empty() ? key : key.empty() ? section_ : section_ + "." + key;
    return invalid_argument(source_ + ": " + field + ": " + what);
  }

 private:
  const json& j_;
  std::string source_;
  std::string section_;
};

Result<const json*> section(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || !j.at(key).is_object()) {
    std::string hint;
    if (std::string_view(key) == "gpu" || std::string_view(key) == "links")
      hint = "; a profile measured without a GPU has none: run `strata profile` on the GPU machine, "
             "or add --assume-gpu NAME to take them from the catalogue";
    return invalid_argument(source + ": " + key + ": missing (an object)" + hint);
  }
  return &j.at(key);
}

uint64_t gib_to_bytes(double gib) { return static_cast<uint64_t>(gib * kGiB + 0.5); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Result<HardwareProfile> parse_hardware_profile(const json& j, const std::string& source) {
  if (!j.is_object()) return invalid_argument(source + ": a hardware profile must be a JSON object");
  HardwareProfile p;
  Fields top(j, source, "");
  STRATA_ASSIGN_OR_RETURN(p.name, top.text("name", true));
  STRATA_ASSIGN_OR_RETURN(p.description, top.text("description", false));
  STRATA_ASSIGN_OR_RETURN(p.source, top.text("source", false));
  if (j.contains("in_capacity_sweep")) {
    if (!j.at("in_capacity_sweep").is_boolean())
      return top.error("in_capacity_sweep", "must be true or false");
    p.in_capacity_sweep = j.at("in_capacity_sweep").get<bool>();
  }

  STRATA_ASSIGN_OR_RETURN(const json* g, section(j, "gpu", source));
  Fields gf(*g, source, "gpu");
  STRATA_ASSIGN_OR_RETURN(p.gpu.name, gf.text("name", false));
  STRATA_ASSIGN_OR_RETURN(double gpu_gib, gf.positive("memory_gib"));
  p.gpu.memory_bytes = gib_to_bytes(gpu_gib);
  STRATA_ASSIGN_OR_RETURN(p.gpu.gemm_prefill_tflops, gf.positive("gemm_prefill_tflops"));
  STRATA_ASSIGN_OR_RETURN(p.gpu.gemm_decode_tflops, gf.positive("gemm_decode_tflops"));
  STRATA_ASSIGN_OR_RETURN(p.gpu.hbm_gbps, gf.positive("hbm_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.gpu.dequant_gelems, gf.positive("dequant_gelems", false));

  STRATA_ASSIGN_OR_RETURN(const json* c, section(j, "cpu", source));
  Fields cf(*c, source, "cpu");
  STRATA_ASSIGN_OR_RETURN(p.cpu.name, cf.text("name", false));
  STRATA_ASSIGN_OR_RETURN(double cores, cf.positive("cores"));
  p.cpu.cores = static_cast<int>(cores);
  STRATA_ASSIGN_OR_RETURN(double dram_gib, cf.positive("dram_gib"));
  p.cpu.dram_bytes = gib_to_bytes(dram_gib);
  STRATA_ASSIGN_OR_RETURN(p.cpu.dram_gbps, cf.positive("dram_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.cpu.gemm_tflops, cf.positive("gemm_tflops"));
  STRATA_ASSIGN_OR_RETURN(p.cpu.attention_gflops, cf.positive("attention_gflops"));
  STRATA_ASSIGN_OR_RETURN(p.cpu.dequant_gelems, cf.positive("dequant_gelems", false));

  STRATA_ASSIGN_OR_RETURN(const json* l, section(j, "links", source));
  Fields lf(*l, source, "links");
  STRATA_ASSIGN_OR_RETURN(p.links.h2d_gbps, lf.positive("h2d_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.links.d2h_gbps, lf.positive("d2h_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.links.duplex_gbps, lf.positive("duplex_gbps"));
  if (2 * p.links.duplex_gbps < std::max(p.links.h2d_gbps, p.links.d2h_gbps))
    return lf.error("duplex_gbps",
                    "is the rate of each direction when both run at once; twice it cannot be "
                    "below either one-way rate (h2d_gbps, d2h_gbps)");

  STRATA_ASSIGN_OR_RETURN(const json* d, section(j, "disk", source));
  Fields df(*d, source, "disk");
  STRATA_ASSIGN_OR_RETURN(p.disk.name, df.text("name", false));
  STRATA_ASSIGN_OR_RETURN(double disk_gib, df.positive("capacity_gib"));
  p.disk.capacity_bytes = gib_to_bytes(disk_gib);
  if (!d->contains("read_gbps") || !d->contains("write_gbps"))
    return df.error(d->contains("read_gbps") ? "write_gbps" : "read_gbps",
                    "is missing: measure the disk with `strata profile --dir DIR` (without --skip-disk)");
  STRATA_ASSIGN_OR_RETURN(p.disk.read_gbps, df.positive("read_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.disk.write_gbps, df.positive("write_gbps"));
  return p;
}

json hardware_profile_to_json(const HardwareProfile& p) {
  auto gib = [](uint64_t b) { return static_cast<double>(b) / kGiB; };
  json j;
  j["name"] = p.name;
  j["description"] = p.description;
  j["source"] = p.source;
  if (!p.in_capacity_sweep) j["in_capacity_sweep"] = false;
  json g = {{"name", p.gpu.name},
            {"memory_gib", gib(p.gpu.memory_bytes)},
            {"gemm_prefill_tflops", p.gpu.gemm_prefill_tflops},
            {"gemm_decode_tflops", p.gpu.gemm_decode_tflops},
            {"hbm_gbps", p.gpu.hbm_gbps}};
  if (p.gpu.dequant_gelems > 0) g["dequant_gelems"] = p.gpu.dequant_gelems;
  j["gpu"] = g;
  json c = {{"name", p.cpu.name},
            {"cores", p.cpu.cores},
            {"dram_gib", gib(p.cpu.dram_bytes)},
            {"dram_gbps", p.cpu.dram_gbps},
            {"gemm_tflops", p.cpu.gemm_tflops},
            {"attention_gflops", p.cpu.attention_gflops}};
  if (p.cpu.dequant_gelems > 0) c["dequant_gelems"] = p.cpu.dequant_gelems;
  j["cpu"] = c;
  j["links"] = {{"h2d_gbps", p.links.h2d_gbps},
                {"d2h_gbps", p.links.d2h_gbps},
                {"duplex_gbps", p.links.duplex_gbps}};
  j["disk"] = {{"name", p.disk.name},
               {"capacity_gib", gib(p.disk.capacity_bytes)},
               {"read_gbps", p.disk.read_gbps},
               {"write_gbps", p.disk.write_gbps}};
  return j;
}

std::vector<HardwareProfile> hardware_catalogue() {
  std::vector<HardwareProfile> out;
  for (const auto& f : detail::embedded_files()) {
    std::string_view path = f.path;
    if (path.rfind("hardware/", 0) != 0) continue;
    std::string source = "policies/" + std::string(path);
    json j = json::parse(f.text, nullptr, /*allow_exceptions=*/false);
    STRATA_CHECK(!j.is_discarded(), source + " is not valid JSON");
    auto p = parse_hardware_profile(j, source);
    STRATA_CHECK(p.is_ok(), p.status().to_string());
    out.push_back(std::move(p).value());
  }
  std::sort(out.begin(), out.end(),
            [](const HardwareProfile& a, const HardwareProfile& b) { return a.name < b.name; });
  return out;
}

Result<HardwareProfile> catalogue_hardware(std::string_view name) {
  std::string want = lower(name);
  std::string names;
  for (auto& p : hardware_catalogue()) {
    if (lower(p.name) == want) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return not_found("no hardware named '" + std::string(name) + "' in the catalogue (" + names +
                   "); give a profile file written by `strata profile` or one of those names");
}

Result<std::string> embedded_policy_file(std::string_view relative_path) {
  for (const auto& f : detail::embedded_files())
    if (relative_path == f.path) return std::string(f.text);
  return not_found("policies/" + std::string(relative_path) + " is not compiled into strata");
}

}  // namespace strata::planner
