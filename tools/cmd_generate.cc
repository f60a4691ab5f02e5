// strata generate: the offline batch job. JSONL (or .jsonl.zst) requests in, JSONL results out,
// with progress on stderr, a summary at the end and --resume after a crash. Formats: DESIGN.md,
// "Offline batch I/O".
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "commands.h"
#include "runtime/batch_job.h"
#include "runtime/context.h"
#include "runtime/load_model.h"
#include "text/tokenizer.h"

namespace strata::tools {

namespace {

struct GenerateOptions {
  runtime::BatchJobOptions job;
  std::string model;
  std::string device = "cpu";
  int threads = 0;
  bool quiet = false;
  std::string json_summary;
};

Status run(GenerateOptions& o) {
  // Everything that can fail without touching the model fails first.
  if (!std::filesystem::is_directory(o.model))
    return not_found(o.model + ": the model directory does not exist");
  STRATA_RETURN_IF_ERROR(runtime::check_batch_files(o.job));
  if (!o.json_summary.empty()) {
    std::ofstream probe(o.json_summary, std::ios::app);
    if (!probe) return io_error(o.json_summary + ": cannot write the JSON summary there", errno);
  }
  STRATA_ASSIGN_OR_RETURN(auto tokenizer, text::Tokenizer::load_dir(o.model));
  runtime::ContextOptions copts;
  copts.device = o.device;
  copts.threads = o.threads;
  copts.log_level = o.quiet ? LogLevel::kWarn : LogLevel::kInfo;
  STRATA_ASSIGN_OR_RETURN(auto ctx, runtime::make_context(copts));
  STRATA_ASSIGN_OR_RETURN(auto model, runtime::load_model_dir(*ctx, o.model));
  if (tokenizer->vocab_size() > model->config().vocab_size)
    ctx->logger.warn("the tokenizer has " + std::to_string(tokenizer->vocab_size()) + " tokens but the model only " +
                     std::to_string(model->config().vocab_size));
  o.job.model_name = std::filesystem::path(o.model).lexically_normal().filename().string();
  if (o.job.model_name.empty()) o.job.model_name = std::filesystem::path(o.model).parent_path().filename().string();
  o.job.progress.quiet = o.quiet;
  o.job.progress.live = ::isatty(STDERR_FILENO) != 0;
  STRATA_ASSIGN_OR_RETURN(runtime::BatchSummary summary, runtime::run_batch_job(*model, *tokenizer, o.job, ctx->logger));
  if (!o.quiet) std::fprintf(stderr, "%s", summary.to_text().c_str());
  if (!o.json_summary.empty()) {
    std::ofstream out(o.json_summary, std::ios::trunc);
    out << summary.to_json().dump(2) << "\n";
    if (!out) return io_error(o.json_summary + ": writing the JSON summary failed", errno);
  }
  return Status::ok();
}

}  // namespace

void register_generate(CLI::App& app, int* exit_code) {
  static GenerateOptions o;
  auto* cmd = app.add_subcommand("generate", "Offline batch generation: JSONL requests in, JSONL results out");
  cmd->add_option("--model", o.model, "Hugging Face model directory (config.json, safetensors, tokenizer.json)")
      ->required();
  cmd->add_option("--input", o.job.input, "requests, one JSON object per line (.jsonl or .jsonl.zst; - = stdin)")
      ->required();
  cmd->add_option("--output", o.job.output, "results, one JSON object per line (.jsonl or .jsonl.zst)")->required();
  cmd->add_flag("--resume", o.job.resume, "continue an interrupted job: skip requests already in --output");
  cmd->add_flag("--overwrite", o.job.overwrite, "replace an existing --output");
  cmd->add_option("--max-tokens", o.job.max_tokens, "default max_tokens per request")->capture_default_str();
  cmd->add_option("--temperature", o.job.temperature, "default temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-p", o.job.top_p, "default top_p (1 = no limit)")->capture_default_str();
  cmd->add_option("--top-k", o.job.top_k, "default top_k (0 = no limit)")->capture_default_str();
  cmd->add_option("--seed", o.job.seed, "job seed; a request without \"seed\" uses a hash of it and its custom_id")
      ->capture_default_str();
  cmd->add_option("--stop", o.job.stop, "default stop string (repeat for several)");
  cmd->add_flag("--ignore-eos", o.job.ignore_eos, "keep generating after an end-of-sequence token");
  cmd->add_option("--chat-template", o.job.chat_template,
                  "chat template family for /v1/chat/completions: llama2, llama3, mistral or chatml "
                  "(default: detected from tokenizer_config.json)");
  cmd->add_option("--batch-size", o.job.batch_size, "sequences per block")->capture_default_str();
  cmd->add_option("--window", o.job.window, "requests read ahead and grouped into blocks by prompt length")
      ->capture_default_str();
  cmd->add_option("--progress-interval", o.job.progress.interval_s,
                  "seconds between progress lines when stderr is not a terminal")
      ->capture_default_str();
  cmd->add_flag("--quiet", o.quiet, "no progress and no summary on stderr");
  cmd->add_option("--json-summary", o.json_summary, "also write the summary as JSON to this file");
  cmd->add_option("--threads", o.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  cmd->callback([exit_code] { *exit_code = report("generate", run(o)); });
}

}  // namespace strata::tools
