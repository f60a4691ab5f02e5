// strata capacity: what hardware a job needs. For a model shape and a job (requests x prompt +
// generated tokens), plans every catalogue GPU x DRAM size x disk and writes a report: Markdown,
// a self-contained HTML page with SVG charts (throughput against DRAM, time and cost of the job,
// the bottleneck of each point) and JSON. With --gpus-per-machine and --machines, the time and cost
// of the job sharded over that many GPUs (planner::sweep_capacity_at_scale).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/json_read.h"
#include "common/units.h"
#include "model/shapes.h"
#include "planner/capacity.h"

namespace strata::tools {

namespace {

struct CapacityArgs {
  std::string shape, prices, disks, drams, gpus, out_dir;
  std::string weights_compression = "none", kv_compression = "none";
  int64_t prompt_len = 0, gen_len = 0, requests = 0;
  bool list = false;
  planner::Scale scale;
};

Result<nlohmann::json> read_json(const std::string& path) {
  Result<nlohmann::json> j = strata::read_json_file(path, JsonLimits{.max_bytes = 16 << 20});
  if (!j.is_ok() && j.status().code() == StatusCode::kCorrupt) return invalid_argument(j.status().message());
  return j;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

Result<std::vector<planner::Compression>> choices(const std::string& flag, const std::string& v) {
  if (v == "none") return std::vector{planner::Compression::kNone};
  if (v == "int4") return std::vector{planner::Compression::kInt4};
  if (v == "auto") return std::vector{planner::Compression::kNone, planner::Compression::kInt4};
  return invalid_argument(flag + " must be none, int4 or auto, not '" + v + "'");
}

Status write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return io_error("cannot write " + path.string(), errno);
  return Status::ok();
}

Status run_capacity(const CapacityArgs& a) {
  using namespace planner;
  if (a.list) {
    for (const auto& h : hardware_catalogue())
      std::printf("%-16s %-28s %6.1f GiB  %s\n", h.name.c_str(), h.gpu.name.c_str(),
                  static_cast<double>(h.gpu.memory_bytes) / static_cast<double>(kGiB), h.description.c_str());
    return Status::ok();
  }
  if (a.shape.empty() || a.prompt_len <= 0 || a.gen_len <= 0 || a.requests <= 0)
    return invalid_argument("give --model-shape, --prompt-len, --gen-len and --requests (all positive)");
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig cfg, model::named_shape(a.shape));
  STRATA_ASSIGN_OR_RETURN(const ModelSpec spec, make_model_spec(cfg, a.shape));

  CapacityOptions o;
  o.prices = default_prices();
  if (!a.prices.empty()) {
    STRATA_ASSIGN_OR_RETURN(auto j, read_json(a.prices));
    STRATA_ASSIGN_OR_RETURN(o.prices, parse_prices(j, a.prices));
  }
  if (!a.disks.empty()) {
    STRATA_ASSIGN_OR_RETURN(auto j, read_json(a.disks));
    STRATA_ASSIGN_OR_RETURN(o.disks, parse_disk_options(j, a.disks));
  }
  for (const auto& d : split(a.drams)) {
    auto b = parse_bytes(d);
    if (!b.is_ok()) return b.status().with_context("--dram");
    o.dram_sizes.push_back(*b);
  }
  STRATA_ASSIGN_OR_RETURN(o.search.weight_compression, choices("--weights-compression", a.weights_compression));
  STRATA_ASSIGN_OR_RETURN(o.search.kv_compression, choices("--kv-compression", a.kv_compression));

  std::vector<HardwareProfile> machines;
  if (a.gpus.empty()) {
    for (auto& h : hardware_catalogue())
      if (h.in_capacity_sweep) machines.push_back(h);
  } else {
    for (const auto& name : split(a.gpus)) {
      STRATA_ASSIGN_OR_RETURN(HardwareProfile h, catalogue_hardware(name));
      machines.push_back(h);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (a.scale.gpus_per_machine < 1 || a.scale.gpus_per_machine > 64)
    return invalid_argument("--gpus-per-machine must be 1 to 64, got " + std::to_string(a.scale.gpus_per_machine));
  if (a.scale.machines < 1 || a.scale.machines > 100000)
    return invalid_argument("--machines must be 1 to 100000, got " + std::to_string(a.scale.machines));
  STRATA_ASSIGN_OR_RETURN(CapacityReport report, sweep_capacity_at_scale(spec, {a.prompt_len, a.gen_len, a.requests},
                                                                         machines, o, a.scale));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::filesystem::path dir = a.out_dir.empty() ? "capacity-" + a.shape : a.out_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error("cannot create " + dir.string() + ": " + ec.message(), ec.value());
  const std::string md = capacity_markdown(report);
  STRATA_RETURN_IF_ERROR(write_file(dir / "report.md", md));
  STRATA_RETURN_IF_ERROR(write_file(dir / "report.html", capacity_html(report)));
  STRATA_RETURN_IF_ERROR(write_file(dir / "report.json", capacity_json(report).dump(2) + "\n"));
  // The summary table of the Markdown report, on the terminal.
  const size_t end = md.find("## Every configuration");
  std::fputs(md.substr(0, end).c_str(), stdout);
  std::printf("planned %zu configurations in %.1f s; wrote %s/report.md, report.html, report.json\n",
              report.points.size(), seconds, dir.string().c_str());
  return Status::ok();
}

}  // namespace

void register_capacity(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("capacity", "Report the throughput, time and cost of a job across hardware");
  static CapacityArgs a;
  cmd->add_option("--model-shape", a.shape, "named shape (models/shapes), e.g. llama-3-70b");
  cmd->add_option("--prompt-len", a.prompt_len, "prompt tokens per request");
  cmd->add_option("--gen-len", a.gen_len, "generated tokens per request");
  cmd->add_option("--requests", a.requests, "requests in the job");
  cmd->add_option("--prices", a.prices, "prices JSON (default: policies/capacity/prices.json)");
  cmd->add_option("--disks", a.disks, "disk options JSON (default: policies/capacity/disks.json)");
  cmd->add_option("--dram", a.drams, "DRAM sizes to sweep, e.g. 64GiB,256GiB (default 64..1024 GiB)");
  cmd->add_option("--gpus", a.gpus, "catalogue entries to sweep, e.g. l4,h100-pcie (default: all)");
  cmd->add_option("--weights-compression", a.weights_compression, "none, int4 or auto (default none)");
  cmd->add_option("--kv-compression", a.kv_compression, "none, int4 or auto (default none)");
  cmd->add_option("-o,--output-dir", a.out_dir, "report directory (default capacity-<shape>)");
  cmd->add_option("--gpus-per-machine", a.scale.gpus_per_machine,
                  "GPUs per machine, one engine each on its shard (generate --devices); they share the machine's "
                  "--dram and disk")
      ->capture_default_str();
  cmd->add_option("--machines", a.scale.machines, "machines (Slurm tasks: strata slurm --tasks machines x GPUs)")
      ->capture_default_str();
  cmd->add_flag("--list", a.list, "list the hardware catalogue and exit");
  cmd->callback([exit_code] { *exit_code = report("capacity", run_capacity(a)); });
}

}  // namespace strata::tools
