// The offline batch job behind `strata generate`: reads JSONL requests, tokenizes them (chat
// messages through the model's chat template), runs them batch_size at a time (a finished
// sequence's slot taken by the next waiting request, or fixed blocks of similar prompt length), and appends one result line per request as soon as it finishes. Bad lines become
// error lines and the job goes on; with `resume` the requests already answered in the output
// (by custom_id) are skipped and a torn last line is repaired, so a job killed at any moment and
// resumed answers every request exactly once. The job's identity (input fingerprint and settings)
// is kept beside the output (job_identity.h) and a resume of another job is refused (resume.h). The model is a Transformer with its own KV cache or any
// compute::SequenceModel (the offloading engine, which then runs blocks of its policy's size).
// Not thread safe; the model and tokenizer are borrowed.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/log.h"
#include "common/status.h"
#include "compute/sequence_model.h"
#include "compute/transformer.h"
#include "runtime/generator.h"
#include "runtime/progress.h"
#include "runtime/shard.h"
#include "text/tokenizer.h"

namespace strata::runtime {

// What runs the blocks after this one: another model (e.g. the offloading engine re-planned from
// what the first block measured) and its block size; a null model keeps the current one.
struct ModelSwitch {
  compute::SequenceModel* model = nullptr;
  int32_t batch_size = 0;
};

struct BatchJobOptions {
  std::string input;            // .jsonl or .jsonl.zst ("-" = standard input)
  std::string output;           // .jsonl or .jsonl.zst ("-" = standard output: no resume, no job file)
  bool resume = false;          // skip requests already in the output
  bool resume_anyway = false;   // resume even when the input or the settings differ from the job's
  bool overwrite = false;       // replace an existing output
  // Answer only the requests of this shard (shard.h); `output` is then the shard's own file. Every
  // line needs a custom_id, and the input must be a file (each shard reads all of it).
  ShardSpec shard;
  // Sampling defaults; a request's body overrides each of them.
  int32_t max_tokens = 256;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;            // a request without "seed" uses a hash of this and its custom_id
  std::vector<std::string> stop;
  bool ignore_eos = false;
  // Scheduling.
  int32_t batch_size = 32;      // sequences per block (continuous: sequences at once)
  // Continuous: a finished sequence's slot goes to the next waiting request (Generator::set_slots);
  // otherwise fixed blocks, each run until its longest answer is done.
  bool continuous = true;
  // Continuous, on a model that takes mixed steps: the prompt tokens a decode step carries beside
  // the running sequences' tokens (Generator::set_prompt_chunk; 0: whole prompts).
  int32_t prompt_chunk = Generator::kDefaultPromptChunk;
  int32_t window = 1024;        // requests read ahead and grouped by prompt length
  // Positions (prompt + max_tokens) a request may need; more is an error line for that request.
  // The offloading engine's policy sets it (its prompt_len + gen_len); 0 = the model's context.
  int64_t max_sequence_len = 0;
  std::string chat_template;    // a family or a .jinja file; "" = the model's own template
  std::string model_name;       // the "model" of every result: the served model's name
  // A request field strata does not know or cannot honour is left out (one warning per distinct
  // field for the job) rather than making the request an error line.
  bool ignore_unknown_fields = false;
  bool ordered = false;  // write results in input order (each waits for the earlier lines' results)
  // What else changes answers, for the job's identity: a fingerprint of the model's files
  // (model_files_fingerprint), the device kind ("cpu", "cuda") and the weight compression.
  std::string model_fingerprint;
  std::string device = "cpu";
  std::string compress = "none";
  ProgressOptions progress;
  // When the command started (model loading and weight placement included), for the summary's
  // time to the first result; unset: when the job's run starts.
  std::optional<std::chrono::steady_clock::time_point> started;
  // Set (by a signal handler) to stop the job: the record being written is finished, the output
  // synced, and the job returns kCancelled; --resume goes on from there.
  const std::atomic<bool>* interrupted = nullptr;
  // Called after each block with the number of blocks run so far (this run's); its error stops
  // the job (the results written so far stay, and --resume goes on from them).
  std::function<Result<ModelSwitch>(int64_t blocks_done)> after_block;
  // Optional, for the continuous schedule: called once, inside the job's first run, between two
  // steps, just before a finished sequence's slot would first go to a waiting request (the steps so
  // far are a sample of the job's). True: the job wants another model, so that run takes no more
  // requests and ends when its running ones do; after_block(1), called then, returns the model,
  // and the requests not started run on it. Without it, a job whose first block after_block looks
  // at runs that block alone.
  std::function<Result<bool>()> look_in_first_run;
};

struct BatchSummary {
  int64_t requests = 0;         // lines handled in this run (ok + failed)
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t failed_job = 0;       // of `failed`, those of scope "job" (retried by --resume)
  std::map<std::string, int64_t> errors;  // failed requests by error code
  std::map<std::string, std::string> first_errors;  // by error code: the first one's message
  int64_t retried = 0;          // job-level error lines of an earlier run removed to run again
  int64_t skipped = 0;          // already answered in the output (resume)
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t blocks = 0;
  int64_t refills = 0;          // prompt steps that gave waiting requests finished sequences' slots
  double wall_s = 0;
  double prefill_s = 0;
  double decode_s = 0;
  // Where the steps' time went (GenerationStats): the steps the model ran, their tokens and
  // sampled rows, the model's own seconds, the wait for allowed sets, choosing the tokens.
  int64_t steps = 0, step_tokens = 0, sampled_rows = 0;
  double model_s = 0, mask_wait_s = 0, choose_s = 0;
  int64_t peak_rss_bytes = 0;
  // Seconds from the start (BatchJobOptions::started) to the first record this run wrote; -1: none.
  double first_result_s = -1;
  // The other tiers' peaks where the run had them (the offloading engine's report): GPU memory in
  // use, pinned host memory held, bytes in the offload directory; -1: not measured.
  int64_t peak_gpu_bytes = -1, pinned_bytes = -1, disk_bytes = -1;
  ShardSpec shard;              // the shard this job answered (count 0: the whole input)
  int64_t shard_requests = 0;   // the shard's requests (lines) ...
  int64_t input_requests = 0;   // ... of the input's

  nlohmann::json to_json() const;
  std::string to_text() const;  // a few lines for stderr
};

// Checks the options before any work: the input can be opened, the output can be written, an
// existing output is only reused with resume or overwrite, and the sampling defaults, sizes and
// counts are in range. Errors name the flag and say what is allowed.
Status check_batch_files(const BatchJobOptions& options);
// The part of check_batch_files about values: sampling defaults, sizes, counts.
Status check_job_options(const BatchJobOptions& options);

Result<BatchSummary> run_batch_job(compute::Transformer& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log);
Result<BatchSummary> run_batch_job(compute::SequenceModel& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log);

// The shape of a job, for planning: its valid requests (tokenized as the job will tokenize them)
// and the longest prompt, largest max_tokens and largest prompt + max_tokens among them.
struct JobShape {
  int64_t requests = 0;  // sequences: a request of n choices counts n
  int64_t max_prompt_tokens = 0;
  int64_t max_new_tokens = 0;
  int64_t max_sequence_len = 0;
  std::vector<std::pair<int64_t, int64_t>> lengths;  // each sequence's (prompt tokens, max_tokens)
};

// Reads and tokenizes the whole input once (not standard input) without generating or writing
// anything. Lines that would become error lines are not counted. Requests already answered in the
// output are counted too (the plan covers the whole input).
Result<JobShape> scan_batch_job(const model::ModelConfig& config, const text::Tokenizer& tokenizer,
                                const BatchJobOptions& options, Logger& log);

}  // namespace strata::runtime
