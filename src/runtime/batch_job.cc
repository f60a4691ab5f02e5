#include "runtime/batch_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/check.h"
#include "common/process.h"
#include "runtime/batch_job_impl.h"
#include "runtime/job_identity.h"
#include "runtime/resume.h"
#include "text/batch_request.h"
#include "text/constraint.h"
#include "text/incremental_decoder.h"
#include "text/line_io.h"

namespace strata::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace batch {

// The chat template: the model's own, or --chat-template's family or file. Its warnings are
// logged by run() (scan() chooses it too, before run(), and stays quiet).
Status Job::init_chat(bool warn) {
  std::vector<std::string> warnings;
  STRATA_ASSIGN_OR_RETURN(chat_template_,
                          text::ChatTemplate::choose(tok_, o_.chat_template, warnings));
  if (warn)
    for (const auto& w : warnings) log_.warn(w);
  return Status::ok();
}

Result<JobShape> Job::scan() {
  if (o_.input == "-")
    return invalid_argument("standard input cannot be read twice to plan the job; give --max-prompt-len");
  STRATA_RETURN_IF_ERROR(init_chat(/*warn=*/false));
  JobShape shape;
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o_.input));
  std::string line;
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
    if (!more) break;
    if (is_blank(line)) continue;
    if (o_.shard.sharded()) {
      const std::optional<std::string> id = request_custom_id(line);
      if (!id || !o_.shard.owns(*id)) continue;
    }
    text::ParsedLine parsed =
        text::parse_request_line(line, reader->line_number(), {.ignore_unknown_fields = o_.ignore_unknown_fields});
    if (!parsed.request || !seen_ids_.insert(parsed.request->custom_id).second) continue;
    Prepared p;
    p.req = std::move(*parsed.request);
    if (prepare(p)) continue;  // an error line, not work
    const int64_t prompt = static_cast<int64_t>(p.gen.prompt.size());
    shape.requests += p.req.n;
    shape.max_prompt_tokens = std::max(shape.max_prompt_tokens, prompt);
    shape.max_new_tokens = std::max<int64_t>(shape.max_new_tokens, p.gen.max_new_tokens);
    shape.max_sequence_len = std::max<int64_t>(shape.max_sequence_len, prompt + p.gen.max_new_tokens);
    for (int32_t i = 0; i < p.req.n; ++i) shape.lengths.emplace_back(prompt, p.gen.max_new_tokens);
  }
  log_.info("planning for " + std::to_string(shape.requests) + " requests of " + o_.input + ": prompts up to " +
            std::to_string(shape.max_prompt_tokens) + " tokens, max_tokens up to " +
            std::to_string(shape.max_new_tokens));
  return shape;
}

// Opens the output: replaced with --overwrite; with --resume checked against the job that wrote
// it and trimmed to what it answers; the job file written beside it. Sets `total` to the requests
// of the input (0 for standard input), for the progress bar.
Status Job::open_output(int64_t& total) {
  std::error_code ec;
  if (o_.overwrite && !o_.resume && o_.output != "-" && fs::exists(o_.output, ec)) {
    fs::resize_file(o_.output, 0, ec);
    if (ec) return io_error(o_.output + ": cannot truncate: " + ec.message(), ec.value());
  }
  JobIdentity now;
  STRATA_ASSIGN_OR_RETURN(now.input, fingerprint_input(o_.input, o_.shard));
  now.answers = answer_settings(o_, tok_);
  total = now.input.requests;
  if (o_.shard.sharded()) {
    if (now.input.first_line_without_id > 0)
      return invalid_argument(o_.input + ":" + std::to_string(now.input.first_line_without_id) +
                              ": this line has no custom_id (a string), and --shard " + o_.shard.to_string() +
                              " splits the job by custom_id; give every request a custom_id, or run the job "
                              "without --shard");
    total = now.input.shard_requests;
    sum_.shard = o_.shard;
    sum_.shard_requests = now.input.shard_requests;
    sum_.input_requests = now.input.requests;
    log_.info("shard " + o_.shard.to_string() + ": " + std::to_string(now.input.shard_requests) + " of the " +
              std::to_string(now.input.requests) + " requests of " + o_.input + ", written to " + o_.output);
  }
  if (o_.output == "-") {  // standard output: nothing to resume, no job file beside it
    STRATA_ASSIGN_OR_RETURN(writer_, text::RecordWriter::open(o_.output));
    return Status::ok();
  }
  const bool has_output = fs::exists(o_.output, ec) && fs::file_size(o_.output, ec) > 0;
  if (o_.resume && has_output) {
    STRATA_ASSIGN_OR_RETURN(resume_, prepare_resume(o_.output, now, o_.resume_anyway, log_));
    sum_.retried = resume_.retried;
  }
  // The job file says who writes this output; a resumed job with a different identity (allowed
  // with --resume-anyway) records the new one.
  STRATA_RETURN_IF_ERROR(write_job_file(o_.output, now));
  STRATA_ASSIGN_OR_RETURN(writer_, text::RecordWriter::open(o_.output));
  return Status::ok();
}

Result<BatchSummary> Job::run() {
  const auto t0 = std::chrono::steady_clock::now();
  started_ = o_.started.value_or(t0);
  model_name_ = o_.model_name;
  STRATA_RETURN_IF_ERROR(init_chat(/*warn=*/true));
  int64_t total = 0;
  STRATA_RETURN_IF_ERROR(open_output(total));
  progress_ = std::make_unique<Progress>(o_.progress, std::max<int64_t>(0, total - resume_.answered));
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o_.input));
  Status status = Status::ok();
  if (o_.continuous) {
    status = run_continuous(*reader);
  } else {
    std::vector<Prepared> window;
    for (bool more = true; status.is_ok() && more;) {
      status = read_requests(*reader, window, &more);
      if (status.is_ok()) status = run_window(window);
    }
  }
  if (status.is_ok())
    STRATA_CHECK(order_.empty() && ready_.empty(), "--ordered: a result was never written");
  // Whatever happened, what was written is made durable before returning.
  Status synced = writer_->sync();
  progress_->finish();
  STRATA_RETURN_IF_ERROR(status);
  STRATA_RETURN_IF_ERROR(synced);
  if (constraint_cut_ > 0)
    log_.warn(std::to_string(constraint_cut_) + " structured-output answers stopped at max_tokens before their value "
              "was complete (finish_reason \"length\"); raise max_tokens for them");
  sum_.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sum_.peak_rss_bytes = static_cast<int64_t>(peak_rss_bytes());
  return sum_;
}

}  // namespace batch

using batch::Job;


Status check_job_options(const BatchJobOptions& o) {
  auto bad = [](const char* flag, const std::string& allowed, const std::string& got) {
    return invalid_argument(std::string(flag) + " must be " + allowed + " (got " + got + ")");
  };
  if (o.batch_size < 1) return bad("--batch-size", "an integer >= 1", std::to_string(o.batch_size));
  if (o.window < 1) return bad("--window", "an integer >= 1", std::to_string(o.window));
  if (o.max_tokens < 1) return bad("--max-tokens", "an integer >= 1", std::to_string(o.max_tokens));
  if (!std::isfinite(o.temperature) || o.temperature < 0 || o.temperature > 1e6f)
    return bad("--temperature", "a number in [0, 1e6] (0 = greedy)", std::to_string(o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1)) return bad("--top-p", "a number in (0, 1] (1 = no limit)", std::to_string(o.top_p));
  if (o.top_k < 0) return bad("--top-k", "an integer >= 0 (0 = no limit)", std::to_string(o.top_k));
  if (o.prompt_chunk < 0)
    return bad("--prompt-chunk", "an integer >= 0 (0 = whole prompts)", std::to_string(o.prompt_chunk));
  for (const std::string& stop : o.stop)
    if (stop.empty()) return invalid_argument("--stop must not be an empty string");
  if (!std::isfinite(o.progress.interval_s) || o.progress.interval_s <= 0)
    return bad("--progress-interval", "a number of seconds > 0", std::to_string(o.progress.interval_s));
  return Status::ok();
}

Status check_batch_files(const BatchJobOptions& o) {
  if (o.input.empty()) return invalid_argument("--input is required");
  if (o.resume_anyway && !o.resume) return invalid_argument("--resume-anyway needs --resume");
  if (o.output.empty()) return invalid_argument("--output is required");
  if (o.output == "-" && o.resume)
    return invalid_argument("--resume cannot continue --output - (standard output): there is no earlier output to "
                            "read; write to a file to be able to resume");
  if (o.input != "-") {
    std::error_code ec;
    if (!fs::exists(o.input, ec)) return not_found(o.input + ": the input file does not exist");
    if (fs::is_directory(o.input, ec)) return invalid_argument(o.input + ": the input is a directory, not a file");
    if (::access(o.input.c_str(), R_OK) != 0) return io_error(o.input + ": the input file is not readable", errno);
    if (o.output != "-" && fs::equivalent(o.input, o.output, ec))
      return invalid_argument("--input and --output name the same file");
  }
  if (o.shard.sharded() && o.input == "-")
    return invalid_argument("--shard needs --input to be a file: every shard reads the whole input and answers its "
                            "own part (standard input can be read by one process only)");
  if (o.shard.sharded() && o.output == "-")
    return invalid_argument("--shard needs --output to be a file: each shard writes OUTPUT.shard-I-of-N beside it");
  if (o.resume && o.overwrite) return invalid_argument("--resume and --overwrite contradict each other; choose one");
  std::error_code ec;
  if (o.output == "-") {
    // Standard output: results there, progress and logs on stderr.
  } else if (fs::exists(o.output, ec)) {
    if (fs::is_directory(o.output, ec)) return invalid_argument(o.output + ": the output is a directory");
    if (!o.resume && !o.overwrite)
      return invalid_argument(o.output + " already exists: pass --resume to continue that job or --overwrite to "
                              "replace it");
    if (::access(o.output.c_str(), W_OK) != 0) return io_error(o.output + ": the output file is not writable", errno);
  } else {
    fs::path parent = fs::path(o.output).parent_path();
    if (parent.empty()) parent = ".";
    if (!fs::is_directory(parent, ec)) return not_found(o.output + ": the directory " + parent.string() + " does not exist");
    if (::access(parent.c_str(), W_OK) != 0)
      return io_error(o.output + ": cannot create the output in " + parent.string() + " (not writable)", errno);
  }
  return check_job_options(o);
}

Result<BatchSummary> run_batch_job(compute::SequenceModel& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log) {
  STRATA_RETURN_IF_ERROR(check_batch_files(options));
  Job job(model.config(), &model, tokenizer, options, log);
  return job.run();
}

Result<BatchSummary> run_batch_job(compute::Transformer& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log) {
  compute::TransformerModel with_cache(model);  // a KV cache sized for each block at its start
  return run_batch_job(with_cache, tokenizer, options, log);
}

Result<JobShape> scan_batch_job(const model::ModelConfig& config, const text::Tokenizer& tokenizer,
                                const BatchJobOptions& options, Logger& log) {
  Job job(config, nullptr, tokenizer, options, log);
  return job.scan();
}

json BatchSummary::to_json() const {
  const double total_tokens = static_cast<double>(prompt_tokens + completion_tokens);
  return {{"requests", requests},
          {"ok", ok},
          {"failed", failed},
          {"failed_job", failed_job},
          {"errors", errors},
          {"first_errors", first_errors},
          {"retried", retried},
          {"skipped", skipped},
          {"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"blocks", blocks},
          {"refills", refills},
          {"wall_s", wall_s},
          {"prefill_s", prefill_s},
          {"decode_s", decode_s},
          {"steps", {{"count", steps}, {"tokens", step_tokens}, {"sampled_rows", sampled_rows},
                     {"model_s", model_s}, {"mask_wait_s", mask_wait_s}, {"choose_s", choose_s}}},
          {"output_tokens_per_s", wall_s > 0 ? completion_tokens / wall_s : 0.0},
          {"total_tokens_per_s", wall_s > 0 ? total_tokens / wall_s : 0.0},
          {"requests_per_s", wall_s > 0 ? requests / wall_s : 0.0},
          {"first_result_s", first_result_s >= 0 ? json(first_result_s) : json(nullptr)},
          {"peak_memory_bytes", {{"cpu", peak_rss_bytes},
                                 {"gpu", peak_gpu_bytes >= 0 ? json(peak_gpu_bytes) : json(nullptr)},
                                 {"pinned", pinned_bytes >= 0 ? json(pinned_bytes) : json(nullptr)},
                                 {"disk", disk_bytes >= 0 ? json(disk_bytes) : json(nullptr)}}},
          {"shard", shard.sharded() ? json{{"index", shard.index}, {"count", shard.count},
                                           {"requests", shard_requests}, {"input_requests", input_requests}}
                                    : json(nullptr)}};
}

std::string BatchSummary::to_text() const {
  char buf[1024];
  const double total_tokens = static_cast<double>(prompt_tokens + completion_tokens);
  std::string out;
  if (shard.sharded()) {
    std::snprintf(buf, sizeof(buf), "shard %d/%d: %lld of the input's %lld requests (%.1f%%)\n", shard.index,
                  shard.count, static_cast<long long>(shard_requests), static_cast<long long>(input_requests),
                  input_requests > 0 ? 100.0 * static_cast<double>(shard_requests) / static_cast<double>(input_requests) : 0.0);
    out += buf;
  }
  std::snprintf(buf, sizeof(buf),
                "requests: %lld ok, %lld failed, %lld already done\n"
                "tokens: %lld in, %lld out in %.2f s: %.1f out tok/s, %.1f total tok/s, %.2f requests/s\n"
                "engine: prefill %.2f s (%.1f tok/s), decode %.2f s (%.1f tok/s), %lld blocks, %lld refills\n",
                static_cast<long long>(ok), static_cast<long long>(failed), static_cast<long long>(skipped),
                static_cast<long long>(prompt_tokens), static_cast<long long>(completion_tokens), wall_s,
                wall_s > 0 ? completion_tokens / wall_s : 0.0, wall_s > 0 ? total_tokens / wall_s : 0.0,
                wall_s > 0 ? requests / wall_s : 0.0, prefill_s, prefill_s > 0 ? prompt_tokens / prefill_s : 0.0,
                decode_s, decode_s > 0 ? completion_tokens / decode_s : 0.0, static_cast<long long>(blocks),
                static_cast<long long>(refills));
  out += buf;
  if (steps > 0) {
    std::snprintf(buf, sizeof(buf),
                  "steps: %lld (%.1f tokens, %.1f sampled a step): model %.2f s, waiting for allowed sets %.2f s, "
                  "choosing tokens %.2f s\n",
                  static_cast<long long>(steps), static_cast<double>(step_tokens) / static_cast<double>(steps),
                  static_cast<double>(sampled_rows) / static_cast<double>(steps), model_s, mask_wait_s, choose_s);
    out += buf;
  }
  if (first_result_s >= 0) {
    std::snprintf(buf, sizeof(buf), "first result: %.2f s after the start\n", first_result_s);
    out += buf;
  }
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::snprintf(buf, sizeof(buf), "peak memory: cpu %.1f MiB (resident)", mib(peak_rss_bytes));
  out += buf;
  if (peak_gpu_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", gpu %.1f MiB", mib(peak_gpu_bytes));
    out += buf;
  }
  if (pinned_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", pinned %.1f MiB", mib(pinned_bytes));
    out += buf;
  }
  if (disk_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", disk %.1f MiB", mib(disk_bytes));
    out += buf;
  }
  out += "\n";
  if (!errors.empty()) {
    // By code: how many, and the first one's message (the others are in the output's error lines).
    out += "errors by code:\n";
    for (const auto& [code, n] : errors) {
      std::string first = first_errors.count(code) ? first_errors.at(code) : "";
      if (first.size() > 200) first = first.substr(0, 197) + "...";
      std::snprintf(buf, sizeof(buf), "  %-20s %6lld  first: %s\n", code.c_str(), static_cast<long long>(n),
                    first.c_str());
      out += buf;
    }
  }
  if (failed_job > 0) {
    out += std::to_string(failed_job);
    out += " requests failed because of a job setting or the model, not their own content (error lines with "
           "\"scope\": \"job\"); fix the setting and run again with --resume to retry just those\n";
  }
  return out;
}

}  // namespace strata::runtime
