// strata bench: benchmarks. `strata bench --model-shape NAME` runs the offloading engine end to end
// on a named shape with synthetic weights (one block of random prompts, FlexGen's metric, measured
// beside the planner's prediction); `strata bench io` measures disk reads through the io_uring and
// fallback backends, printed as JSON lines (one per measurement, as they come) and a Markdown table
// with the machine they ran on.
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/drivers/io_bench.h"
#include "bench/drivers/offload_bench.h"
#include "commands.h"
#include "flag_checks.h"
#include "common/log.h"
#include "common/units.h"
#include "cuda/device.h"
#include "model/shapes.h"
#include "offload_setup.h"
#include "plan_print.h"
#include "planner/recalibrate.h"
#include "run_calibration.h"
#include "planner/model_spec.h"
#include "planner/search.h"
#include "runtime/context.h"
#include "storage/topology.h"

namespace strata::tools {

namespace {

// "a,b,c" -> values parsed by `parse`.
template <typename T, typename F>
Result<std::vector<T>> parse_list(const std::string& text, const char* flag, F parse) {
  std::vector<T> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    Result<T> v = parse(item);
    if (!v.is_ok()) return v.status().with_context(std::string(flag) + " item '" + item + "'");
    out.push_back(*v);
  }
  if (out.empty()) return invalid_argument(std::string(flag) + " needs at least one value");
  return out;
}

Result<int> parse_depth(const std::string& s) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v < 1 || v > 4096) {
    return invalid_argument("a queue depth is an integer in [1, 4096]");
  }
  return static_cast<int>(v);
}

Result<uint64_t> parse_size(const std::string& s) { return parse_bytes(s); }

struct IoArgs {
  std::string dir;
  std::string size = "8GiB";
  std::string depths = "1,4,16,64";
  std::string blocks = "256KiB,1MiB,4MiB";
  std::string fallback_depths = "1,16";
  int reps = 3;
  double max_seconds = 3.0;
  bool keep_file = false;
  bool reuse_file = false;
  bool no_register = false;
  std::string gpu_bus_id;
};

std::string machine_line(const std::string& dir) {
  char host[256] = "?";
  ::gethostname(host, sizeof(host) - 1);
  struct utsname u {};
  ::uname(&u);
  return std::string("host ") + host + ", Linux " + u.release + ", " + dir + " on " +
         bench::filesystem_type(dir);
}

Status run_io(const IoArgs& a) {
  Logger log;
  bench::IoBenchOptions o;
  o.dir = a.dir;
  STRATA_ASSIGN_OR_RETURN(o.file_bytes, parse_bytes(a.size));
  STRATA_ASSIGN_OR_RETURN(o.depths, parse_list<int>(a.depths, "--depths", parse_depth));
  STRATA_ASSIGN_OR_RETURN(o.block_sizes, parse_list<uint64_t>(a.blocks, "--blocks", parse_size));
  if (a.fallback_depths.empty() || a.fallback_depths == "none") {
    o.fallback_depths.clear();
  } else {
    STRATA_ASSIGN_OR_RETURN(o.fallback_depths,
                            parse_list<int>(a.fallback_depths, "--fallback-depths", parse_depth));
  }
  if (a.reps < 1) return invalid_argument("--reps must be at least 1");
  if (a.max_seconds <= 0) return invalid_argument("--max-seconds must be above 0");
  o.repetitions = a.reps;
  o.max_seconds_per_rep = a.max_seconds;
  o.keep_file = a.keep_file;
  o.reuse_file = a.reuse_file;
  o.register_buffers = !a.no_register;
  const std::string machine = machine_line(a.dir);
  log.info("bench io: " + machine);
  STRATA_ASSIGN_OR_RETURN(storage::Topology topo, storage::query_topology(a.gpu_bus_id));
  std::printf("%s\n", storage::format_topology(topo).c_str());
  STRATA_ASSIGN_OR_RETURN(auto results,
                          bench::run_io_bench(o, log, [](const bench::IoBenchResult& r) {
                            std::printf("%s\n", bench::io_bench_json(r).c_str());
                            std::fflush(stdout);
                          }));
  std::printf("\n%s; file %s; each repetition reads the file once or stops after %.1f s\n\n%s",
              machine.c_str(), format_bytes(o.file_bytes).c_str(), o.max_seconds_per_rep,
              bench::io_bench_table(results).c_str());
  return Status::ok();
}

void register_bench_io(CLI::App& bench, int* exit_code) {
  auto* cmd = bench.add_subcommand("io", "Disk read GB/s: io_uring at each queue depth and block "
                                         "size, the thread backend, and synchronous pread");
  static IoArgs args;
  cmd->add_option("--dir", args.dir, "directory on the drive to measure (a test file goes there)")
      ->required();
  cmd->add_option("--size", args.size, "test file size, e.g. 8GiB")->capture_default_str();
  cmd->add_option("--depths", args.depths, "io_uring queue depths")->capture_default_str();
  cmd->add_option("--blocks", args.blocks, "block sizes")->capture_default_str();
  cmd->add_option("--fallback-depths", args.fallback_depths,
                  "thread-backend depths at the largest block ('none' to skip)")
      ->capture_default_str();
  cmd->add_option("--reps", args.reps, "repetitions per point")->capture_default_str();
  cmd->add_option("--max-seconds", args.max_seconds, "time cap per repetition")
      ->capture_default_str();
  cmd->add_flag("--keep-file", args.keep_file, "leave the test file behind");
  cmd->add_flag("--reuse-file", args.reuse_file, "reuse a test file of the right size");
  cmd->add_flag("--no-register", args.no_register, "no io_uring registered buffers");
  cmd->add_option("--gpu-pci-bus-id", args.gpu_bus_id,
                  "also report where this GPU sits (e.g. 0000:3b:00.0)");
  cmd->callback([exit_code] { *exit_code = report("bench io", run_io(args)); });
}


struct ModelArgs {
  std::string shape;
  int64_t prompt_len = 0, gen_len = 0;
  BudgetFlags budgets;
  std::string hardware, policy = "auto", compress = "none", offload_dir, device = "cuda", trace;
  bool json = false, warmup = false;
  uint64_t seed = 0;
  int rank = 1;                  // the planner's choice (1) or a runner-up
  std::string save_calibration;  // the profile refit from the run, written here
};

// The CUDA device index of --device ("cuda" = 0, "cuda:N" = N).
Result<int> cuda_index(const std::string& device) {
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() < 10 &&
      device.find_first_not_of("0123456789", 5) == std::string::npos)
    return std::stoi(device.substr(5));
  return invalid_argument("--device must be cuda or cuda:N (the offloading engine runs on a GPU), not '" +
                          device + "'");
}

// The detected name of CUDA device `index`, or kUnsupported saying the benchmark needs one.
Result<std::string> cuda_device_name(int index) {
  const cuda::DeviceQuery q = cuda::query_devices();
  for (const auto& d : q.devices)
    if (d.index == index) return d.name;
  return unsupported("strata bench --model-shape runs the offloading engine and needs a CUDA device; " +
                     (q.devices.empty() ? "none is usable here (" + q.note + ")"
                                        : "there is no device " + std::to_string(index)) +
                     ". `strata plan --model-shape ... --hardware NAME` predicts without one");
}

// The profile refit from the measured block (planner/recalibrate.h), written to `path`, and the
// per-phase comparison it comes from (on stderr with --json, else stdout).
Status save_calibration(const std::string& path, const bench::OffloadBenchResult& r, const planner::ModelSpec& spec,
                        const planner::Policy& policy, const planner::HardwareProfile& hw, bool json) {
  STRATA_ASSIGN_OR_RETURN(planner::RunSample sample, run_sample(r.report, spec, policy, hw));
  STRATA_ASSIGN_OR_RETURN(planner::Recalibration rec, planner::recalibrate(hw, {sample}));
  std::FILE* out = json ? stderr : stdout;
  std::fprintf(out, "calibration (a step, measured beside predicted):\n");
  for (const std::string& line : describe_sample(sample)) std::fprintf(out, "  %s\n", line.c_str());
  for (const std::string& line : rec.notes) std::fprintf(out, "  refit: %s\n", line.c_str());
  std::ofstream f(path, std::ios::trunc);
  f << planner::hardware_profile_to_json(rec.profile).dump(2) << "\n";
  f.close();
  if (!f) return io_error(path + ": cannot write the refit profile (--save-calibration)", errno);
  std::fprintf(out, "wrote the refit profile to %s (%s); pass it as --hardware to plan or bench\n", path.c_str(),
               rec.off ? "some resource was more than 10% off" : "every resource within 10%");
  return Status::ok();
}

Status run_model_bench(const ModelArgs& a) {
  using namespace planner;
  if (a.shape.empty()) return invalid_argument("give --model-shape NAME (e.g. opt-30b), or a subcommand: io");
  if (a.prompt_len < 1 || a.gen_len < 1) return invalid_argument("give --prompt-len N and --gen-len N (at least 1)");
  STRATA_RETURN_IF_ERROR(check_device_flag(a.device));
  STRATA_RETURN_IF_ERROR(check_compress_flag(a.compress));
  STRATA_RETURN_IF_ERROR(check_policy_flag(a.policy));
  STRATA_RETURN_IF_ERROR(check_budget_flags(a.budgets.gpu, a.budgets.cpu, a.budgets.disk));
  STRATA_RETURN_IF_ERROR(check_dir_flag("--offload-dir", a.offload_dir.empty() ? default_offload_dir()
                                                                               : std::filesystem::path(a.offload_dir)));
  STRATA_ASSIGN_OR_RETURN(int device, cuda_index(a.device));
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig config, model::named_shape(a.shape));
  STRATA_ASSIGN_OR_RETURN(const ModelSpec spec, make_model_spec(config, a.shape));
  // Without --hardware: this machine's profile (so no GPU fails here, clearly).
  const std::filesystem::path offload_dir =
      a.offload_dir.empty() ? default_offload_dir() : std::filesystem::path(a.offload_dir);
  if (a.hardware.empty()) STRATA_RETURN_IF_ERROR(cuda_device_name(device).status());
  Logger log(a.json ? LogLevel::kWarn : LogLevel::kInfo);
  STRATA_ASSIGN_OR_RETURN(HardwareProfile hw, machine_hardware(a.hardware, device, offload_dir, log, a.json));
  Budgets budgets = default_budgets(hw);
  STRATA_RETURN_IF_ERROR(apply_budget_flags(a.budgets, &budgets));
  const Workload workload{a.prompt_len, a.gen_len, 0};
  PlanResult plan;
  double search_s = -1;
  if (a.policy == "auto") {
    SearchOptions options;
    STRATA_RETURN_IF_ERROR(set_compress_choices(a.compress, &options));
    options.runners_up = a.rank - 1;
    const auto t0 = std::chrono::steady_clock::now();
    STRATA_ASSIGN_OR_RETURN(plan, plan_policy(spec, workload, hw, budgets, options));
    search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a.rank > 1) {
      if (static_cast<int>(plan.runners_up.size()) < a.rank - 1)
        return invalid_argument("--rank " + std::to_string(a.rank) + ": the planner found only " +
                                std::to_string(plan.runners_up.size() + 1) + " policies that fit these budgets");
      STRATA_ASSIGN_OR_RETURN(plan, evaluate_policy(spec, plan.runners_up[static_cast<size_t>(a.rank - 2)], hw, budgets));
    }
  } else {
    STRATA_ASSIGN_OR_RETURN(plan, load_policy_file(a.policy, spec, hw, budgets, workload));
  }
  if (!a.json) {
    print_plan(plan, hw, search_s, /*buffers=*/false);
    std::printf("\n");
    std::fflush(stdout);
  }

  STRATA_RETURN_IF_ERROR(cuda_device_name(device).status());
  runtime::ContextOptions copts;
  copts.device = a.device;
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  bench::OffloadBenchOptions o;
  o.model = a.shape;
  o.workload = workload;
  o.offload_dir = offload_dir;
  o.seed = a.seed;
  o.warmup = a.warmup;
  o.trace = a.trace;
  STRATA_ASSIGN_OR_RETURN(bench::OffloadBenchResult r, bench::run_offload_bench(config, plan.policy, o, *ctx));
  if (!a.save_calibration.empty()) STRATA_RETURN_IF_ERROR(save_calibration(a.save_calibration, r, spec, plan.policy, hw, a.json));
  if (a.json) {
    nlohmann::json j = bench::offload_bench_json(r);
    j["hardware"] = hw.name;
    j["policy"] = policy_to_json(plan.policy);
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s", bench::format_offload_bench(r).c_str());
    if (!a.trace.empty()) std::printf("trace        %s\n", a.trace.c_str());
  }
  return Status::ok();
}

void register_bench_model(CLI::App& bench, int* exit_code) {
  static ModelArgs a;
  bench.add_option("--model-shape", a.shape, "named shape (models/shapes) with synthetic weights, e.g. opt-30b");
  bench.add_option("--prompt-len", a.prompt_len, "prompt tokens per sequence")->check(CLI::PositiveNumber);
  bench.add_option("--gen-len", a.gen_len, "generated tokens per sequence")->check(CLI::PositiveNumber);
  bench.add_option("--gpu-mem", a.budgets.gpu, "GPU memory budget, e.g. 14GiB (default: the profile's GPU - 1 GiB)");
  bench.add_option("--cpu-mem", a.budgets.cpu, "pinned DRAM budget (default: the profile's DRAM - 10%)");
  bench.add_option("--disk-mem", a.budgets.disk, "offload disk budget (default: 95% of the profile's disk)");
  bench.add_option("--hardware", a.hardware,
                   "hardware profile JSON (strata profile) or catalogue name (default: this machine's "
                   "profile, measured once by a quick `strata profile` and cached)");
  bench.add_option("--policy", a.policy, "auto (plan for these budgets) or a policy file (strata plan -o FILE)")
      ->capture_default_str();
  bench.add_option("--compress", a.compress,
                   "int4-g64 compression the planner may use: none (fp16), int4 (weights and KV) or auto")
      ->capture_default_str();
  bench.add_option("--offload-dir", a.offload_dir, "directory for the disk tier (default: TMPDIR/strata-offload)");
  bench.add_option("--device", a.device, "cuda or cuda:N")->capture_default_str();
  bench.add_option("--trace", a.trace, "write a Chrome/Perfetto trace of the measured block here");
  bench.add_flag("--json", a.json, "print the result (and the policy) as JSON instead of the tables");
  bench.add_flag("--warmup", a.warmup, "run one unmeasured block first");
  bench.add_option("--rank", a.rank, "with --policy auto: run the planner's K-th best policy (1: its choice)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  bench.add_option("--save-calibration", a.save_calibration,
                   "write the profile refit from this run's busy times (per phase and resource) to FILE");
  bench.add_option("--seed", a.seed, "seed of the synthetic weights and prompts")->capture_default_str();
  bench.callback([&bench, exit_code] {
    if (!bench.get_subcommands().empty()) return;  // `strata bench io ...` ran its own callback
    *exit_code = report("bench", run_model_bench(a));
  });
}

}  // namespace

void register_bench(CLI::App& app, int* exit_code) {
  auto* bench = app.add_subcommand(
      "bench", "End-to-end offloading benchmark on a named shape (--model-shape), or a micro-benchmark subcommand");
  bench->require_subcommand(0, 1);
  register_bench_model(*bench, exit_code);
  register_bench_io(*bench, exit_code);
}

}  // namespace strata::tools
