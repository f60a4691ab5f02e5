// strata generate: the offline batch job. JSONL (or .jsonl.zst) requests in, JSONL results out,
// with progress on stderr, a summary at the end and --resume after a crash. Formats: DESIGN.md,
// "Offline batch I/O". On a GPU the model runs on the offloading engine with a policy planned for
// the job and this machine's memory (or read from a file); --policy none keeps it all on the GPU.
// Every flag is checked before any work; SIGINT and SIGTERM stop the job after the record being
// written, with the output synced and a note on how to resume (exit code 130).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "commands.h"
#include "common/crash_point.h"
#include "cuda/device.h"
#include "flag_checks.h"
#include "offload/engine.h"
#include "multi_engine.h"
#include "offload_setup.h"
#include "offloaded_job.h"
#include "plan_print.h"
#include "planner/model_spec.h"
#include "planner/search.h"
#include "runtime/batch_job.h"
#include "runtime/context.h"
#include "runtime/job_identity.h"
#include "runtime/load_model.h"
#include "runtime/shard.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct GenerateOptions {
  runtime::BatchJobOptions job;
  std::string model;
  std::string served_model_name;  // default: the model directory's name
  bool served_model_name_given = false;
  std::string device = "auto";
  int threads = 0;
  bool quiet = false;
  std::string json_summary;
  // The offloading engine (CUDA only).
  std::string policy = "auto", hardware, compress = "none", offload_dir, trace;
  BudgetFlags budgets;
  int64_t max_prompt_len = 0;
  bool no_recalibrate = false;
  bool verbose = false;
  std::string shard;  // --shard I/N
  std::string devices;  // --devices: one engine per device, each on its shard (multi_engine.h)
  std::string schedule = "auto";  // --schedule: auto, continuous or fixed
};

// Set by SIGINT/SIGTERM; the batch job stops at the next record boundary.
std::atomic<bool> g_interrupted{false};
volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) {
  g_signal = sig;
  g_interrupted.store(true);
}

// A second signal of the same kind kills the process at once (SA_RESETHAND).
void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The message of a job stopped by a signal: where its results are and how to go on.
Status interrupted_status(const GenerateOptions& o, const Status& s) {
  const char* name = g_signal == SIGTERM ? "SIGTERM" : "SIGINT";
  if (o.job.output == "-")
    return Status(StatusCode::kCancelled, "stopped by " + std::string(name) + " (" + s.message() +
                                              "); the results written so far went to standard output (a job "
                                              "writing there cannot be resumed)");
  return Status(StatusCode::kCancelled, "stopped by " + std::string(name) + " (" + s.message() +
                                            "); the results written so far are in " + o.job.output +
                                            " and synced to disk. Continue the job with the same command and "
                                            "--resume");
}

// Every flag's value, before any work. `device` is --device resolved (cpu or cuda...); flags the
// chosen engine does not use are named in `ignored`.
Status check_flags(const GenerateOptions& o, const std::string& device, std::vector<std::string>& ignored) {
  STRATA_RETURN_IF_ERROR(check_device_flag(o.device));
  STRATA_RETURN_IF_ERROR(check_compress_flag(o.compress));
  STRATA_RETURN_IF_ERROR(check_budget_flags(o.budgets.gpu, o.budgets.cpu, o.budgets.disk));
  if (o.threads < 0) return invalid_argument("--threads must be >= 0 (0 = all cores), got " + std::to_string(o.threads));
  if (o.max_prompt_len < 0)
    return invalid_argument("--max-prompt-len must be >= 0 (0 = scan the input), got " + std::to_string(o.max_prompt_len));
  if (!o.json_summary.empty()) STRATA_RETURN_IF_ERROR(check_output_file_flag("--json-summary", o.json_summary));
  if (o.served_model_name_given && o.served_model_name.empty())
    return invalid_argument("--served-model-name must not be empty (leave it out to use the model directory's name)");
  const bool offloading = device != "cpu" && o.policy != "none";
  if (offloading) {
    STRATA_RETURN_IF_ERROR(check_policy_flag(o.policy));
    STRATA_RETURN_IF_ERROR(check_dir_flag("--offload-dir", o.offload_dir.empty() ? default_offload_dir()
                                                                                 : std::filesystem::path(o.offload_dir)));
    if (!o.trace.empty()) STRATA_RETURN_IF_ERROR(check_output_file_flag("--trace", o.trace));
    if (o.max_prompt_len == 0 && o.job.input == "-" && o.policy == "auto")
      return invalid_argument("--input - (standard input) cannot be scanned to plan the job; give --max-prompt-len");
    return Status::ok();
  }
  const std::pair<const char*, bool> unused[] = {
      {"--offload-dir", !o.offload_dir.empty()}, {"--gpu-mem", !o.budgets.gpu.empty()},
      {"--cpu-mem", !o.budgets.cpu.empty()},     {"--disk-mem", !o.budgets.disk.empty()},
      {"--compress", o.compress != "none"},       {"--hardware", !o.hardware.empty()},
      {"--trace", !o.trace.empty()},              {"--max-prompt-len", o.max_prompt_len > 0},
      {"--policy", o.policy != "auto" && o.policy != "none"}};
  for (const auto& [flag, given] : unused)
    if (given) ignored.push_back(flag);
  return Status::ok();
}

Status write_summary(const GenerateOptions& o, const runtime::BatchSummary& summary) {
  crash_point("summary");
  if (!o.quiet) std::fprintf(stderr, "%s", summary.to_text().c_str());
  if (!o.json_summary.empty()) {
    std::ofstream out(o.json_summary, std::ios::trunc);
    out << summary.to_json().dump(2) << "\n";
    if (!out) return io_error(o.json_summary + ": writing the JSON summary failed", errno);
  }
  return Status::ok();
}

// The CUDA device index of --device ("cuda" and "gpu" = 0).
int cuda_index(const std::string& device) {
  const size_t colon = device.find(':');
  return colon == std::string::npos ? 0 : std::atoi(device.c_str() + colon + 1);
}

// The job's workload for the planner: its lengths from a scan of the input (a mix of up to
// kLengthBuckets buckets), or the --max-prompt-len and --max-tokens the user gave.
constexpr int kLengthBuckets = 8;

Result<planner::Workload> job_workload(const GenerateOptions& o, const model::ModelConfig& config,
                                       const text::Tokenizer& tokenizer, Logger& log) {
  if (o.max_prompt_len > 0) return planner::Workload{o.max_prompt_len, o.job.max_tokens, 0};
  STRATA_ASSIGN_OR_RETURN(runtime::JobShape shape, runtime::scan_batch_job(config, tokenizer, o.job, log));
  if (shape.lengths.empty()) return planner::Workload{1, std::max<int64_t>(1, o.job.max_tokens), 0};
  planner::Workload w = planner::workload_from_lengths(shape.lengths, kLengthBuckets, o.job.continuous);
  STRATA_RETURN_IF_ERROR(planner::check_workload(w).with_context("the job's lengths"));
  return w;
}

// The job on the offloading engine: plan (or read) the policy, place the weights, run blocks of
// the policy's size, and re-plan after the first block when it ran far from the prediction.
Status run_offloaded(GenerateOptions& o, runtime::Context& ctx, const text::Tokenizer& tokenizer) {
  using namespace planner;
  STRATA_ASSIGN_OR_RETURN(model::ModelFiles files, runtime::open_model_files(ctx, o.model));
  OffloadedJobOptions jo;
  jo.offload_dir = o.offload_dir.empty() ? default_offload_dir() : std::filesystem::path(o.offload_dir);
  STRATA_ASSIGN_OR_RETURN(jo.hardware, machine_hardware(o.hardware, cuda_index(o.device), jo.offload_dir, ctx.logger, o.quiet));
  const HardwareProfile& hw = jo.hardware;
  jo.trace = !o.trace.empty();
  jo.quiet = o.quiet;
  jo.recalibrate = !o.no_recalibrate;
  STRATA_ASSIGN_OR_RETURN(jo.budgets, resolve_budgets(o.budgets, cuda_index(o.device), jo.offload_dir));
  STRATA_ASSIGN_OR_RETURN(const ModelSpec spec, make_model_spec(files.config, o.job.model_name));
  PlanResult plan;
  double search_s = -1;
  jo.planned = o.policy == "auto";
  if (jo.planned) {
    STRATA_ASSIGN_OR_RETURN(jo.workload, job_workload(o, files.config, tokenizer, ctx.logger));
    STRATA_RETURN_IF_ERROR(set_compress_choices(o.compress, &jo.search));
    const auto t0 = std::chrono::steady_clock::now();
    STRATA_ASSIGN_OR_RETURN(plan, plan_policy(spec, jo.workload, hw, jo.budgets, jo.search));
    search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } else {
    STRATA_ASSIGN_OR_RETURN(plan, load_policy_file(o.policy, spec, hw, jo.budgets, Workload{}));
    jo.workload = plan.policy.workload;
  }
  if (!o.quiet) {
    print_plan(plan, hw, search_s, /*buffers=*/false, stderr);
    std::fprintf(stderr, "\n");
  }
  OffloadedJob job(ctx, files, spec, plan, std::move(jo));
  STRATA_RETURN_IF_ERROR(job.start());
  const int64_t block = plan.policy.batch.block();
  o.job.batch_size = static_cast<int32_t>(block);
  // Continuous: enough requests read ahead that the longest answers of many turns of the slots
  // start first (a job's last steps run with few slots busy when a long answer starts late).
  o.job.window = std::max<int32_t>(o.job.window, static_cast<int32_t>(block * (o.job.continuous ? 16 : 1)));
  o.job.max_sequence_len = plan.policy.workload.prompt_len + plan.policy.workload.gen_len;
  o.job.after_block = [&job](int64_t done) { return job.after_block(done); };
  o.job.look_in_first_run = [&job] { return job.look_in_run(); };
  o.job.progress.predicted_job_s = job.plan().policy.predicted.job_s;
  STRATA_ASSIGN_OR_RETURN(runtime::BatchSummary summary, runtime::run_batch_job(job.engine(), tokenizer, o.job, ctx.logger));
  const offload::OffloadReport report = job.engine().report();
  summary.peak_gpu_bytes = static_cast<int64_t>(report.peak_gpu_bytes);
  summary.pinned_bytes = static_cast<int64_t>(report.pinned_bytes);
  summary.disk_bytes = static_cast<int64_t>(report.disk_bytes);
  if (!o.trace.empty()) STRATA_RETURN_IF_ERROR(job.engine().write_trace(o.trace));
  if (!o.quiet) std::fprintf(stderr, "%s", offload::format_offload_report(job.engine().report()).c_str());
  return write_summary(o, summary);
}

// The whole model in DRAM (the CPU) or on the GPU (--policy none).
Status run_in_memory(GenerateOptions& o, runtime::Context& ctx, const text::Tokenizer& tokenizer) {
  STRATA_ASSIGN_OR_RETURN(auto model, runtime::load_model_dir(ctx, o.model));
  if (tokenizer.vocab_size() > model->config().vocab_size)
    ctx.logger.warn("the tokenizer has " + std::to_string(tokenizer.vocab_size()) + " tokens but the model only " +
                    std::to_string(model->config().vocab_size));
  STRATA_ASSIGN_OR_RETURN(runtime::BatchSummary summary, runtime::run_batch_job(*model, tokenizer, o.job, ctx.logger));
  return write_summary(o, summary);
}

// --devices: this process starts one `generate --shard I/N` per device and merges their shards.
Status run_devices(const GenerateOptions& o) {
  if (!o.shard.empty())
    return invalid_argument("--devices and --shard contradict each other: --devices runs every shard of the job "
                            "itself, one per device (use --shard for one shard on one device)");
  if (o.device != "auto")
    return invalid_argument("--devices and --device contradict each other: --devices names every engine's device");
  MultiEngineJob job;
  STRATA_ASSIGN_OR_RETURN(job.devices, parse_devices(o.devices, cuda::query_devices().devices));
  STRATA_ASSIGN_OR_RETURN(job.generate_args, generate_args_for_children());
  job.input = o.job.input;
  job.output = o.job.output;
  job.resume = o.job.resume;
  job.overwrite = o.job.overwrite;
  job.quiet = o.quiet;
  job.threads = o.threads;
  job.cpu_mem = o.budgets.cpu;
  job.json_summary = o.json_summary;
  if (!std::filesystem::is_directory(o.model)) return not_found(o.model + ": the model directory does not exist");
  if (o.job.input != "-" && !std::filesystem::is_regular_file(o.job.input))
    return not_found(o.job.input + ": the input file does not exist");
  return run_multi_engine(job);
}

Status run(GenerateOptions& o) {
  o.job.started = std::chrono::steady_clock::now();
  if (!o.devices.empty()) return run_devices(o);
  // Everything that can fail without touching the model fails first.
  STRATA_RETURN_IF_ERROR(check_device_flag(o.device));
  // --device auto: the first GPU when there is one, else the CPU.
  if (o.device == "auto") o.device = cuda::query_devices().devices.empty() ? "cpu" : "cuda";
  std::vector<std::string> ignored;
  STRATA_RETURN_IF_ERROR(check_flags(o, o.device, ignored));
  if (!std::filesystem::is_directory(o.model))
    return not_found(o.model + ": the model directory does not exist");
  if (!o.shard.empty()) {  // this process answers one shard, in the shard's own output file
    STRATA_ASSIGN_OR_RETURN(o.job.shard, runtime::parse_shard(o.shard));
    if (o.job.output == "-")
      return invalid_argument("--shard needs --output to be a file: shard I of N writes OUTPUT.shard-I-of-N");
    o.job.output = runtime::shard_output_path(o.job.output, o.job.shard);
    o.job.progress.label = "shard " + o.job.shard.to_string();
  }
  STRATA_RETURN_IF_ERROR(runtime::check_batch_files(o.job));
  if (!o.json_summary.empty()) {
    std::ofstream probe(o.json_summary, std::ios::app);
    if (!probe) return io_error(o.json_summary + ": cannot write the JSON summary there", errno);
  }
  STRATA_ASSIGN_OR_RETURN(auto tokenizer, text::Tokenizer::load_dir(o.model));
  runtime::ContextOptions copts;
  copts.device = o.device;
  copts.threads = o.threads;
  copts.log_level = o.quiet ? LogLevel::kWarn : o.verbose ? LogLevel::kDebug : LogLevel::kInfo;
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  for (const std::string& flag : ignored)
    ctx->logger.warn(flag + " is ignored on the CPU: the model runs in DRAM (offloading needs a GPU)");
  o.job.model_name = std::filesystem::path(o.model).lexically_normal().filename().string();
  if (o.job.model_name.empty()) o.job.model_name = std::filesystem::path(o.model).parent_path().filename().string();
  if (o.served_model_name_given) o.job.model_name = o.served_model_name;
  o.job.model_fingerprint = runtime::model_files_fingerprint(o.model);
  o.job.progress.quiet = o.quiet;
  o.job.progress.live = ::isatty(STDERR_FILENO) != 0;
  o.job.interrupted = &g_interrupted;
  install_signal_handlers();

  // Which engine: the offloading one on a GPU unless --policy none.
  std::string policy = o.device == "cpu" ? "none" : o.policy;
  o.job.device = o.device == "cpu" ? "cpu" : "cuda";
  o.job.compress = policy == "none" ? "none" : o.compress;
  Status s = Status::ok();
  // --schedule auto: continuous batching; fixed blocks only when asked for.
  o.job.continuous = o.schedule != "fixed";
  if (policy != "none") {
    o.policy = policy;
    s = run_offloaded(o, *ctx, *tokenizer);
  } else {
    s = run_in_memory(o, *ctx, *tokenizer);
  }
  if (s.code() == StatusCode::kCancelled) return interrupted_status(o, s);
  return s;
}

}  // namespace

void register_generate(CLI::App& app, int* exit_code) {
  static GenerateOptions o;
  auto* cmd = app.add_subcommand("generate", "Offline batch generation: JSONL requests in, JSONL results out");
  cmd->add_option("--model", o.model, "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--input", o.job.input, "requests, one JSON object per line (.jsonl or .jsonl.zst; - = stdin)")
      ->required();
  cmd->add_option("--output", o.job.output,
                  "results, one JSON object per line (.jsonl or .jsonl.zst; - = stdout, one record per line as "
                  "each request finishes, no --resume)")
      ->required();
  cmd->add_option("--served-model-name", o.served_model_name,
                  "the \"model\" of every result (default: the name of the --model directory; a request's own "
                  "\"model\" is ignored)")
      ->each([](const std::string&) { o.served_model_name_given = true; });
  cmd->add_flag("--ignore-unknown-fields", o.job.ignore_unknown_fields,
                "run a request with a field strata does not know or cannot honour as if the field were absent, "
                "with one warning per distinct field, rather than answering it with an error line");
  cmd->add_option("--shard", o.shard,
                  "answer only shard I of N (numbered from 0, as $SLURM_ARRAY_TASK_ID of --array=0-(N-1)): the "
                  "requests whose custom_id hashes to I, written to OUTPUT.shard-I-of-N (before a .zst suffix); "
                  "combine the shards with strata merge");
  cmd->add_option("--devices", o.devices,
                  "one engine per device, each on its shard of the job, merged at the end: all (every GPU), GPU "
                  "indexes (0,1,3; a GPU named twice, 0,0, runs two engines on it) or cpu,cpu,... (engines sharing "
                  "the CPU). Each GPU's engine runs on its NUMA node; --gpu-mem is each engine's budget (the engines "
                  "of a GPU must fit its memory; without --gpu-mem they share 90% of it), --cpu-mem and --threads "
                  "are split between the engines");
  cmd->add_flag("--resume", o.job.resume, "continue an interrupted job: skip requests already in --output");
  cmd->add_flag("--resume-anyway", o.job.resume_anyway,
                "with --resume: continue even when the input or the settings differ from those of the job that "
                "wrote --output (requests are matched by custom_id)");
  cmd->add_flag("--overwrite", o.job.overwrite, "replace an existing --output");
  cmd->add_option("--max-tokens", o.job.max_tokens, "default max_tokens per request")->capture_default_str();
  cmd->add_option("--temperature", o.job.temperature, "default temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-p", o.job.top_p, "default top_p (1 = no limit)")->capture_default_str();
  cmd->add_option("--top-k", o.job.top_k, "default top_k (0 = no limit)")->capture_default_str();
  cmd->add_option("--seed", o.job.seed, "job seed; a request without \"seed\" uses a hash of it and its custom_id")
      ->capture_default_str();
  cmd->add_option("--stop", o.job.stop, "default stop string (repeat for several)");
  cmd->add_flag("--ignore-eos", o.job.ignore_eos, "keep generating after an end-of-sequence token");
  cmd->add_option(
      "--chat-template", o.job.chat_template,
      "chat template for /v1/chat/completions: a built-in family (llama2, llama3, mistral, chatml) "
      "or a Jinja file (default: the model's own chat_template)");
  cmd->add_option("--batch-size", o.job.batch_size, "sequences at once (with --schedule fixed: per block)")
      ->capture_default_str();
  cmd->add_option("--schedule", o.schedule,
                  "continuous: a finished sequence's slot goes to the next waiting request; fixed: blocks of "
                  "--batch-size (the policy's block) run until their longest answer is done; auto: continuous")
      ->check(CLI::IsMember({"auto", "continuous", "fixed"}))
      ->capture_default_str();
  cmd->add_option("--prompt-chunk", o.job.prompt_chunk,
                  "continuous: the prompt tokens a decode step takes beside the running sequences' tokens, so a "
                  "long joining prompt enters over several steps and does not hold the others up (0: whole "
                  "prompts; the offloading engine keeps each GPU batch within a prompt step's tokens; prompt "
                  "steps of their own, as where the offloading engine attends on the CPU, take whole prompts)")
      ->capture_default_str();
  cmd->add_flag("--ordered", o.job.ordered,
                "write results in the input's order (each waits for the earlier lines' results; a job "
                "interrupted and resumed with --ordered stays in order)");
  cmd->add_option("--window", o.job.window, "requests read ahead: the longest answers start first (continuous), or blocks of similar prompt lengths (fixed)")
      ->capture_default_str();
  cmd->add_option("--progress-interval", o.job.progress.interval_s,
                  "seconds between progress lines when stderr is not a terminal")
      ->capture_default_str();
  cmd->add_flag("--quiet", o.quiet, "no progress and no summary on stderr");
  cmd->add_flag("--verbose", o.verbose, "also log the engine's memory after each step (debug messages)");
  cmd->add_option("--json-summary", o.json_summary, "also write the summary as JSON to this file");
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--device", o.device, "auto (the first GPU when there is one, else the CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
  cmd->add_option("--policy", o.policy,
                  "on a GPU: auto (plan the placement over GPU, pinned DRAM and --offload-dir for this job and "
                  "these budgets), a policy file (strata plan -o FILE), or none (the whole model on the GPU); "
                  "ignored on the CPU. With a policy, blocks are the policy's size (not --batch-size)")
      ->capture_default_str();
  cmd->add_option("--hardware", o.hardware,
                  "hardware profile JSON (strata profile) or catalogue name for the planner (default: this "
                  "machine's profile, measured once by a quick `strata profile` and cached)");
  cmd->add_option("--gpu-mem", o.budgets.gpu, "GPU memory budget (default: the GPU's free memory - 1 GiB)");
  cmd->add_option("--cpu-mem", o.budgets.cpu, "pinned DRAM budget (default: MemAvailable - 10%)");
  cmd->add_option("--disk-mem", o.budgets.disk, "disk budget (default: 95% of the free space of --offload-dir)");
  cmd->add_option("--offload-dir", o.offload_dir, "directory for the disk tier (default: TMPDIR/strata-offload)");
  cmd->add_option("--compress", o.compress, "int4-g64 compression --policy auto may use: none, int4 or auto")
      ->capture_default_str();
  cmd->add_option("--max-prompt-len", o.max_prompt_len,
                  "prompt tokens --policy auto plans for; 0 (default) tokenizes the input once first and plans "
                  "for its longest prompt and largest max_tokens (needed with --input -). Longer requests "
                  "get an error line")
      ->capture_default_str();
  cmd->add_option("--trace", o.trace, "write a Chrome/Perfetto trace of the offloading engine here");
  cmd->add_flag("--no-recalibrate", o.no_recalibrate,
                "keep the plan after the first block (continuous: the steps before the first refill) even "
                "when it ran more than 10% from the prediction (by default the profile is refit from it and "
                "the rest of the job re-planned)");
  cmd->callback([exit_code] { *exit_code = report("generate", run(o)); });
}

}  // namespace strata::tools
