// strata plan: the fastest policy for a model, a workload and a machine (a hardware profile from
// `strata profile` or the catalogue, or explicit memory budgets). Prints the policy and why (the
// time of each resource per layer), and writes the policy JSON that `strata generate --policy`
// reads. With --policy FILE it also evaluates that policy (a hand-written one, another system's)
// under the same cost model and prints it beside the planner's choice.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common/json_read.h"
#include "flag_checks.h"
#include "plan_print.h"
#include "common/units.h"
#include "model/config.h"
#include "model/shapes.h"
#include "planner/hardware.h"
#include "planner/memory_plan.h"
#include "planner/search.h"
#include "offload_setup.h"

namespace strata::tools {

namespace {

struct PlanArgs {
  std::string model_dir, shape, hardware, output = "policy.json";
  std::string gpu_mem, cpu_mem, disk_mem;
  std::string weights_compression = "none", kv_compression = "none", attention = "auto";
  std::string policy, length_mix;
  std::string schedule = "continuous";  // --schedule, for --length-mix: generate's default
  bool output_given = false;
  int64_t prompt_len = 0, gen_len = 0, requests = 0;
  int64_t gpu_batch_size = 0, num_gpu_batches = 0;
  int runners_up = 0;
  bool json = false, buffers = false;
};

Result<planner::HardwareProfile> load_hardware(const std::string& arg) {
  if (arg.empty())
    return invalid_argument(
        "give --hardware: a profile written by `strata profile`, or a catalogue name (see "
        "`strata capacity --list`), e.g. --hardware h100-pcie");
  if (!std::filesystem::is_regular_file(arg)) return planner::catalogue_hardware(arg);
  STRATA_ASSIGN_OR_RETURN(nlohmann::json j, read_json_file(arg, JsonLimits{.max_bytes = 16 << 20}));
  return planner::parse_hardware_profile(j, arg);
}

// `fallback_shape`: the model a policy file names, used when neither --model nor --model-shape is given.
Result<planner::ModelSpec> load_spec(const PlanArgs& a, const std::string& fallback_shape) {
  const std::string shape = a.shape.empty() && a.model_dir.empty() ? fallback_shape : a.shape;
  if (!shape.empty()) {
    STRATA_ASSIGN_OR_RETURN(model::ModelConfig cfg, model::named_shape(shape));
    return planner::make_model_spec(cfg, shape);
  }
  if (a.model_dir.empty()) return invalid_argument("give --model DIR or --model-shape NAME");
  std::filesystem::path dir(a.model_dir);
  STRATA_ASSIGN_OR_RETURN(model::ModelConfig cfg, model::load_config(dir / "config.json"));
  std::string name = std::filesystem::absolute(dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::absolute(dir).parent_path().filename().string();
  return planner::make_model_spec(cfg, name);
}

Result<std::vector<planner::Compression>> compression_choices(const std::string& flag,
                                                              const std::string& value) {
  if (value == "none") return std::vector{planner::Compression::kNone};
  if (value == "int4" || value == "int4-g64") return std::vector{planner::Compression::kInt4};
  if (value == "auto") return std::vector{planner::Compression::kNone, planner::Compression::kInt4};
  return invalid_argument(flag + " must be none, int4 or auto, not '" + value + "'");
}

Status override_budget(const std::string& flag, const std::string& text, uint64_t* budget) {
  if (text.empty()) return Status::ok();
  auto b = parse_bytes(text);
  if (!b.is_ok()) return b.status().with_context(flag);
  *budget = *b;
  return Status::ok();
}

Result<planner::Budgets> budgets_of(const PlanArgs& a, const planner::HardwareProfile& hw) {
  STRATA_RETURN_IF_ERROR(check_budget_flags(a.gpu_mem, a.cpu_mem, a.disk_mem));
  planner::Budgets budgets = planner::default_budgets(hw);
  STRATA_RETURN_IF_ERROR(override_budget("--gpu-mem", a.gpu_mem, &budgets.gpu));
  STRATA_RETURN_IF_ERROR(override_budget("--cpu-mem", a.cpu_mem, &budgets.cpu));
  STRATA_RETURN_IF_ERROR(override_budget("--disk-mem", a.disk_mem, &budgets.disk));
  return budgets;
}

Result<planner::SearchOptions> search_options_of(const PlanArgs& a) {
  using planner::Attention;
  planner::SearchOptions options;
  STRATA_ASSIGN_OR_RETURN(options.weight_compression,
                          compression_choices("--weights-compression", a.weights_compression));
  STRATA_ASSIGN_OR_RETURN(options.kv_compression, compression_choices("--kv-compression", a.kv_compression));
  if (a.attention == "cpu") options.attention = {Attention::kCpu};
  else if (a.attention == "gpu") options.attention = {Attention::kGpu};
  else if (a.attention != "auto")
    return invalid_argument("--attention must be cpu, gpu or auto, not '" + a.attention + "'");
  if (a.gpu_batch_size > 0) options.gpu_batch_sizes = {a.gpu_batch_size};
  if (a.num_gpu_batches > 0) options.num_gpu_batches = {a.num_gpu_batches};
  options.runners_up = a.runners_up;
  return options;
}

// "P:G:N,P:G:N": N requests of P prompt and G generated tokens each.
Result<std::vector<planner::LengthBucket>> parse_length_mix(const std::string& text) {
  std::vector<planner::LengthBucket> mix;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    planner::LengthBucket b;
    char c1 = 0, c2 = 0;
    std::stringstream in(item);
    if (!(in >> b.prompt_len >> c1 >> b.gen_len >> c2 >> b.count) || c1 != ':' || c2 != ':' || !in.eof() ||
        b.prompt_len <= 0 || b.gen_len <= 0 || b.count <= 0)
      return invalid_argument("--length-mix: '" + item +
                              "' is not PROMPT:GEN:COUNT with positive integers (e.g. 128:64:300,512:64:100)");
    mix.push_back(b);
  }
  if (mix.empty()) return invalid_argument("--length-mix: give at least one PROMPT:GEN:COUNT");
  return mix;
}

// The workload from the flags: lengths (or the mix's longest), requests, the mix.
Result<planner::Workload> workload_of(const PlanArgs& a) {
  planner::Workload w{a.prompt_len, a.gen_len, a.requests};
  if (!a.length_mix.empty()) {
    STRATA_ASSIGN_OR_RETURN(w.mix, parse_length_mix(a.length_mix));
    int64_t total = 0;
    for (const auto& b : w.mix) {
      if (a.prompt_len == 0) w.prompt_len = std::max(w.prompt_len, b.prompt_len);
      if (a.gen_len == 0) w.gen_len = std::max(w.gen_len, b.gen_len);
      total += b.count;
    }
    if (w.requests == 0) w.requests = total;
    w.continuous = a.schedule == "continuous";
  }
  return w;
}

// The given policy file: read, parsed and evaluated; every error names the file.
Result<planner::Policy> read_policy_file(const std::string& path) {
  Result<nlohmann::json> j = read_json_file(path, JsonLimits{.max_bytes = 16 << 20});
  if (!j.is_ok()) {
    if (j.status().code() == StatusCode::kNotFound) return not_found(path + ": cannot open the policy file");
    return invalid_argument(j.status().message() + " (a policy is what `strata plan -o` writes)");
  }
  return planner::parse_policy(*j, path);
}

Status run_compare(const PlanArgs& a) {
  using namespace planner;
  STRATA_ASSIGN_OR_RETURN(Policy given, read_policy_file(a.policy));
  STRATA_ASSIGN_OR_RETURN(ModelSpec spec, load_spec(a, given.model));
  if (!given.model.empty() && given.model != spec.name)
    std::fprintf(stderr, "strata plan: %s is a policy for %s; evaluating it for %s\n", a.policy.c_str(),
                 given.model.c_str(), spec.name.c_str());
  given.model = spec.name;
  STRATA_ASSIGN_OR_RETURN(HardwareProfile hw, load_hardware(a.hardware));
  STRATA_ASSIGN_OR_RETURN(Budgets budgets, budgets_of(a, hw));
  STRATA_ASSIGN_OR_RETURN(SearchOptions options, search_options_of(a));
  if (a.prompt_len > 0 || a.gen_len > 0 || !a.length_mix.empty()) {
    STRATA_ASSIGN_OR_RETURN(Workload w, workload_of(a));
    if (w.prompt_len == 0) w.prompt_len = given.workload.prompt_len;
    if (w.gen_len == 0) w.gen_len = given.workload.gen_len;
    given.workload = w;
  } else if (a.requests > 0) {
    given.workload.requests = a.requests;
  }
  auto evaluated = evaluate_policy(spec, given, hw, budgets);
  if (!evaluated.is_ok()) return evaluated.status().with_context(a.policy);
  STRATA_ASSIGN_OR_RETURN(PlanResult planned, plan_policy(spec, given.workload, hw, budgets, options));
  if (a.json) {
    nlohmann::json j = {{"policy_file", a.policy},
                        {"given", policy_to_json(evaluated->policy)},
                        {"planned", policy_to_json(planned.policy)}};
    std::fputs((j.dump(2) + "\n").c_str(), stdout);
  } else {
    print_comparison(*evaluated, std::filesystem::path(a.policy).filename().string(), planned, hw);
  }
  if (a.output_given && !a.output.empty() && a.output != "-") {
    if (std::filesystem::exists(a.output) && std::filesystem::equivalent(a.output, a.policy))
      return invalid_argument("-o " + a.output + " is the --policy file; write the planner's choice elsewhere");
    std::ofstream out(a.output);
    out << policy_to_json(planned.policy).dump(2) << "\n";
    out.close();
    if (!out) return io_error("cannot write the policy to " + a.output, errno);
  }
  return Status::ok();
}

Status run_plan(const PlanArgs& a) {
  using namespace planner;
  if (!a.policy.empty()) return run_compare(a);
  if (a.prompt_len <= 0 && a.length_mix.empty())
    return invalid_argument("give --prompt-len and --gen-len (or --length-mix, or --policy FILE)");
  STRATA_ASSIGN_OR_RETURN(ModelSpec spec, load_spec(a, ""));
  STRATA_ASSIGN_OR_RETURN(HardwareProfile hw, load_hardware(a.hardware));
  STRATA_ASSIGN_OR_RETURN(Budgets budgets, budgets_of(a, hw));
  STRATA_ASSIGN_OR_RETURN(SearchOptions options, search_options_of(a));
  STRATA_ASSIGN_OR_RETURN(Workload workload, workload_of(a));

  const auto start = std::chrono::steady_clock::now();
  STRATA_ASSIGN_OR_RETURN(PlanResult r, plan_policy(spec, workload, hw, budgets, options));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json j = policy_to_json(r.policy);
  if (a.runners_up > 0) {
    nlohmann::json next = nlohmann::json::array();
    for (const Policy& p : r.runners_up) next.push_back(policy_to_json(p));
    j["runners_up"] = next;
  }
  const std::string text = j.dump(2) + "\n";
  if (a.json) {
    std::fputs(text.c_str(), stdout);
  } else {
    print_plan(r, hw, seconds, a.buffers);
    if (!r.runners_up.empty()) print_runners_up(r.runners_up);
  }
  if (!a.output.empty() && a.output != "-") {
    std::ofstream out(a.output);
    out << text;
    out.close();
    if (!out) return io_error("cannot write the policy to " + a.output, errno);
    std::fprintf(a.json ? stderr : stdout, "wrote %s\n", a.output.c_str());
  }
  return Status::ok();
}

}  // namespace

void register_plan(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("plan", "Find the fastest placement policy for a model, workload and machine");
  static PlanArgs a;
  auto* m = cmd->add_option("--model", a.model_dir, "Hugging Face model directory (reads config.json)");
  auto* s = cmd->add_option("--model-shape", a.shape, "named shape (models/shapes), e.g. opt-30b");
  m->excludes(s);
  cmd->add_option("--prompt-len", a.prompt_len, "prompt tokens per request (the longest, with --length-mix)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--gen-len", a.gen_len, "generated tokens per request (the longest, with --length-mix)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--length-mix", a.length_mix,
                  "a job of mixed lengths: PROMPT:GEN:COUNT,... (e.g. 128:64:300,512:64:100); memory is planned "
                  "for the longest");
  cmd->add_option("--schedule", a.schedule,
                  "with --length-mix, how generate will run it: continuous (its default: each finished request's "
                  "room goes to the next, KV paged by each request's length) or fixed (blocks until their longest)")
      ->check(CLI::IsMember({"continuous", "fixed"}));
  cmd->add_option("--policy", a.policy,
                  "evaluate this policy file (e.g. another system's hand-chosen policy) beside the planner's choice");
  cmd->add_option("--requests", a.requests, "requests in the job (0: maximise tokens/s)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--hardware", a.hardware, "hardware profile JSON (strata profile) or catalogue name");
  cmd->add_option("--gpu-mem", a.gpu_mem, "GPU memory budget, e.g. 14GiB (default: GPU memory - 1 GiB)");
  cmd->add_option("--cpu-mem", a.cpu_mem, "pinned DRAM budget (default: DRAM - 10%)");
  cmd->add_option("--disk-mem", a.disk_mem, "offload disk budget (default: 95% of the disk)");
  cmd->add_option("--weights-compression", a.weights_compression, "none, int4 or auto (default none)");
  cmd->add_option("--kv-compression", a.kv_compression, "none, int4 or auto (default none)");
  cmd->add_option("--attention", a.attention, "where attention over off-GPU KV runs: cpu, gpu or auto");
  cmd->add_option("--gpu-batch-size", a.gpu_batch_size, "fix the GPU batch size");
  cmd->add_option("--num-gpu-batches", a.num_gpu_batches, "fix the number of GPU batches per block");
  auto* out = cmd->add_option("-o,--output", a.output,
                               "where to write the policy (default policy.json; - for nowhere; with --policy only "
                               "when given)");
  cmd->add_option("--runners-up", a.runners_up,
                  "also list the next N candidates by predicted time (the policy file keeps them under runners_up)")
      ->check(CLI::Range(0, 64));
  cmd->add_flag("--json", a.json, "print the policy JSON instead of the summary");
  cmd->add_flag("--buffers", a.buffers, "list every buffer the runtime will allocate");
  cmd->callback([exit_code, out] {
    a.output_given = out->count() > 0;
    *exit_code = report("plan", run_plan(a));
  });
}

}  // namespace strata::tools
