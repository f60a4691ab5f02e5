#include "planner/hardware.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/check.h"

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

double RateCurve::tflops(double rows) const {
  STRATA_CHECK(!points.empty(), "RateCurve::tflops on an empty curve");
  if (rows <= points.front().rows) return points.front().tflops;
  if (rows >= points.back().rows) return points.back().tflops;
  size_t i = 1;
  while (points[i].rows < rows) ++i;
  const RatePoint& a = points[i - 1];
  const RatePoint& b = points[i];
  const double t = (std::log(rows) - std::log(a.rows)) / (std::log(b.rows) - std::log(a.rows));
  return a.tflops + t * (b.tflops - a.tflops);
}

const char* calibrated_resource_name(int r) {
  static const char* kNames[kNumCalibrated] = {"gpu", "h2d", "d2h", "disk_read", "disk_write", "cpu_attention"};
  STRATA_CHECK(r >= 0 && r < kNumCalibrated, "no such calibrated resource");
  return kNames[r];
}

bool Calibration::identity() const {
  for (const auto& phase : factor)
    for (double f : phase)
      if (f != 1) return false;
  return true;
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

  // An optional number >= 0 (0 when absent).
  Result<double> nonnegative(const char* key) const {
    if (!j_.contains(key)) return 0.0;
    const json& v = j_.at(key);
    if (!v.is_number() || !(v.get<double>() >= 0))
      return error(key, "must be a number >= 0, not " + v.dump());
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

// An optional curve: [{"rows": R, "tflops": T}, ...] with rows strictly increasing.
Result<RateCurve> parse_curve(const json& parent, const char* key, const Fields& f) {
  RateCurve c;
  if (!parent.contains(key)) return c;
  const json& a = parent.at(key);
  if (!a.is_array() || a.empty())
    return f.error(key, "must be a non-empty array of {\"rows\": R, \"tflops\": T}");
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
    if (!a[i].is_object()) return f.error(at, "must be an object {\"rows\": R, \"tflops\": T}");
    RatePoint p;
    for (auto [name, dst] : {std::pair{"rows", &p.rows}, std::pair{"tflops", &p.tflops}}) {
      if (!a[i].contains(name) || !a[i].at(name).is_number() || !(a[i].at(name).get<double>() > 0))
        return f.error(at + "." + name, "must be a positive number");
      *dst = a[i].at(name).get<double>();
    }
    if (!c.points.empty() && !(p.rows > c.points.back().rows))
      return f.error(at + ".rows", "must be larger than the previous point's (points sorted by rows)");
    c.points.push_back(p);
  }
  return c;
}

json curve_to_json(const RateCurve& c) {
  json a = json::array();
  for (const auto& p : c.points) a.push_back({{"rows", p.rows}, {"tflops", p.tflops}});
  return a;
}

Result<CpuAttentionCost> parse_attention_cost(const json& cpu, const char* key, const std::string& source) {
  CpuAttentionCost c;
  if (!cpu.contains(key)) return c;
  Fields f(cpu.at(key), source, std::string("cpu.") + key);
  STRATA_RETURN_IF_ERROR(f.check_object());
  STRATA_ASSIGN_OR_RETURN(c.gbps, f.positive("gbps"));
  STRATA_ASSIGN_OR_RETURN(c.fixed_us, f.nonnegative("fixed_us"));
  STRATA_ASSIGN_OR_RETURN(c.per_sequence_us, f.nonnegative("per_sequence_us"));
  return c;
}

json attention_cost_to_json(const CpuAttentionCost& c) {
  return {{"fixed_us", c.fixed_us}, {"per_sequence_us", c.per_sequence_us}, {"gbps", c.gbps}};
}

Status parse_gpu_extras(const json& g, const Fields& gf, const std::string& source, GpuProfile* gpu) {
  STRATA_ASSIGN_OR_RETURN(gpu->linear_fp16, parse_curve(g, "linear_fp16", gf));
  STRATA_ASSIGN_OR_RETURN(gpu->linear_int4, parse_curve(g, "linear_int4", gf));
  if (g.contains("fixed")) {
    Fields ff(g.at("fixed"), source, "gpu.fixed");
    STRATA_RETURN_IF_ERROR(ff.check_object());
    STRATA_ASSIGN_OR_RETURN(gpu->fixed.prefill_layer_us, ff.nonnegative("prefill_layer_us"));
    STRATA_ASSIGN_OR_RETURN(gpu->fixed.decode_layer_us, ff.nonnegative("decode_layer_us"));
    STRATA_ASSIGN_OR_RETURN(gpu->fixed.decode_split_layer_us, ff.nonnegative("decode_split_layer_us"));
  }
  if (g.contains("cuda_names")) {
    const json& n = g.at("cuda_names");
    if (!n.is_array()) return gf.error("cuda_names", "must be an array of strings");
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].is_string() || n[i].get<std::string>().empty())
        return gf.error("cuda_names[" + std::to_string(i) + "]", "must be a non-empty string");
      gpu->cuda_names.push_back(n[i].get<std::string>());
    }
  }
  return Status::ok();
}

Result<Calibration> parse_calibration(const json& j, const std::string& source) {
  Calibration c;
  if (!j.contains("calibration")) return c;
  Fields top(j.at("calibration"), source, "calibration");
  STRATA_RETURN_IF_ERROR(top.check_object());
  for (Phase phase : {kPrefill, kDecode}) {
    const char* name = phase == kPrefill ? "prefill" : "decode";
    if (!j.at("calibration").contains(name)) continue;
    Fields f(j.at("calibration").at(name), source, std::string("calibration.") + name);
    STRATA_RETURN_IF_ERROR(f.check_object());
    for (int r = 0; r < kNumCalibrated; ++r) {
      STRATA_ASSIGN_OR_RETURN(c.factor[phase][r], f.positive(calibrated_resource_name(r), false, 1.0));
    }
  }
  return c;
}

json calibration_to_json(const Calibration& c) {
  json j;
  for (Phase phase : {kPrefill, kDecode}) {
    json p;
    for (int r = 0; r < kNumCalibrated; ++r) p[calibrated_resource_name(r)] = c.factor[phase][r];
    j[phase == kPrefill ? "prefill" : "decode"] = p;
  }
  return j;
}

Result<MachineId> parse_machine(const json& j, const std::string& source) {
  MachineId m;
  if (!j.contains("machine")) return m;
  Fields f(j.at("machine"), source, "machine");
  STRATA_RETURN_IF_ERROR(f.check_object());
  STRATA_ASSIGN_OR_RETURN(m.gpu_uuid, f.text("gpu_uuid", false));
  STRATA_ASSIGN_OR_RETURN(m.gpu_name, f.text("gpu_name", false));
  STRATA_ASSIGN_OR_RETURN(m.cpu_model, f.text("cpu_model", false));
  STRATA_ASSIGN_OR_RETURN(m.offload_device, f.text("offload_device", false));
  return m;
}

uint64_t gib_to_bytes(double gib) { return static_cast<uint64_t>(gib * kGiB + 0.5); }

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
  STRATA_RETURN_IF_ERROR(parse_gpu_extras(*g, gf, source, &p.gpu));

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
  STRATA_ASSIGN_OR_RETURN(p.cpu.attention_fp16, parse_attention_cost(*c, "attention_fp16", source));
  STRATA_ASSIGN_OR_RETURN(p.cpu.attention_int4, parse_attention_cost(*c, "attention_int4", source));

  STRATA_ASSIGN_OR_RETURN(const json* l, section(j, "links", source));
  Fields lf(*l, source, "links");
  STRATA_ASSIGN_OR_RETURN(p.links.h2d_gbps, lf.positive("h2d_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.links.d2h_gbps, lf.positive("d2h_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.links.duplex_gbps, lf.positive("duplex_gbps"));
  STRATA_ASSIGN_OR_RETURN(p.links.h2d_latency_us, lf.nonnegative("h2d_latency_us"));
  STRATA_ASSIGN_OR_RETURN(p.links.d2h_latency_us, lf.nonnegative("d2h_latency_us"));
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
  STRATA_ASSIGN_OR_RETURN(p.disk.read_latency_us, df.nonnegative("read_latency_us"));
  STRATA_ASSIGN_OR_RETURN(p.disk.write_latency_us, df.nonnegative("write_latency_us"));
  STRATA_ASSIGN_OR_RETURN(p.calibration, parse_calibration(j, source));
  STRATA_ASSIGN_OR_RETURN(p.machine, parse_machine(j, source));
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
  if (!p.gpu.linear_fp16.empty()) g["linear_fp16"] = curve_to_json(p.gpu.linear_fp16);
  if (!p.gpu.linear_int4.empty()) g["linear_int4"] = curve_to_json(p.gpu.linear_int4);
  if (p.gpu.fixed.any())
    g["fixed"] = {{"prefill_layer_us", p.gpu.fixed.prefill_layer_us},
                  {"decode_layer_us", p.gpu.fixed.decode_layer_us},
                  {"decode_split_layer_us", p.gpu.fixed.decode_split_layer_us}};
  if (!p.gpu.cuda_names.empty()) g["cuda_names"] = p.gpu.cuda_names;
  j["gpu"] = g;
  json c = {{"name", p.cpu.name},
            {"cores", p.cpu.cores},
            {"dram_gib", gib(p.cpu.dram_bytes)},
            {"dram_gbps", p.cpu.dram_gbps},
            {"gemm_tflops", p.cpu.gemm_tflops},
            {"attention_gflops", p.cpu.attention_gflops}};
  if (p.cpu.dequant_gelems > 0) c["dequant_gelems"] = p.cpu.dequant_gelems;
  if (p.cpu.attention_fp16.present()) c["attention_fp16"] = attention_cost_to_json(p.cpu.attention_fp16);
  if (p.cpu.attention_int4.present()) c["attention_int4"] = attention_cost_to_json(p.cpu.attention_int4);
  j["cpu"] = c;
  j["links"] = {{"h2d_gbps", p.links.h2d_gbps},
                {"d2h_gbps", p.links.d2h_gbps},
                {"duplex_gbps", p.links.duplex_gbps}};
  if (p.links.h2d_latency_us > 0) j["links"]["h2d_latency_us"] = p.links.h2d_latency_us;
  if (p.links.d2h_latency_us > 0) j["links"]["d2h_latency_us"] = p.links.d2h_latency_us;
  j["disk"] = {{"name", p.disk.name},
               {"capacity_gib", gib(p.disk.capacity_bytes)},
               {"read_gbps", p.disk.read_gbps},
               {"write_gbps", p.disk.write_gbps}};
  if (p.disk.read_latency_us > 0) j["disk"]["read_latency_us"] = p.disk.read_latency_us;
  if (p.disk.write_latency_us > 0) j["disk"]["write_latency_us"] = p.disk.write_latency_us;
  if (!p.calibration.identity()) j["calibration"] = calibration_to_json(p.calibration);
  if (!p.machine.empty())
    j["machine"] = {{"gpu_uuid", p.machine.gpu_uuid},
                    {"gpu_name", p.machine.gpu_name},
                    {"cpu_model", p.machine.cpu_model},
                    {"offload_device", p.machine.offload_device}};
  return j;
}

}  // namespace strata::planner
