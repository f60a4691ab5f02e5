// The identity of a `strata generate` job, kept beside its output in OUTPUT.strata-job.json so
// that --resume continues only the job that wrote the output. It holds a fingerprint of the input
// (how many requests, an order-independent hash of their custom_ids and one of their contents)
// and every setting that changes an answer (sampling defaults, max_tokens, stop strings, seed,
// ignore_eos, the chat template chosen and its text, the model's files, the device and the
// compression). The file is replaced atomically; its format:
//   {"format": "strata-generate-job", "version": 1, "output": "results.jsonl",
//    "input": {"path": "in.jsonl", "requests": 12, "ids_xxh64": "…", "contents_xxh64": "…"},
//    "answers": {"model": "demo", "model_files_xxh64": "…", "max_tokens": 256, "temperature": 1,
//                "top_p": 1, "top_k": 0, "seed": 0, "stop": [], "ignore_eos": false,
//                "chat_template": "auto", "chat_template_xxh64": "…", "device": "cpu",
//                "compress": "none"}}
// A shard of a job (shard.h) records which ("shard": {"index": 3, "count": 8, "requests": 37}
// in "input"); the rest of "input" fingerprints the whole input, so that every shard of one job
// carries the same fingerprint and `strata merge` can check that they belong together.
// Pure functions apart from the file reads and writes; thread safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "runtime/batch_job.h"
#include "runtime/shard.h"
#include "text/tokenizer.h"

namespace strata::runtime {

struct InputFingerprint {
  std::string path;
  bool from_stdin = false;  // standard input is read once: it has no fingerprint
  int64_t requests = 0;     // non-blank lines
  uint64_t ids = 0;         // order-independent hash of the custom_ids of the lines that have one
  uint64_t contents = 0;    // order-independent hash of the lines (a line without a custom_id
                            // counts with its line number, since only its position names it)
  ShardSpec shard;               // the part of the input this job answers (whole input: count 0)
  int64_t shard_requests = 0;    // non-blank lines of the shard (sharded only)
  int64_t first_line_without_id = 0;  // line number of the first line without a custom_id (0: none)
};

struct JobIdentity {
  InputFingerprint input;
  nlohmann::json answers = nlohmann::json::object();

  nlohmann::json to_json(const std::string& output) const;
  static Result<JobIdentity> from_json(const nlohmann::json& j, const std::string& where);
};

// Reads the input once (not standard input) and fingerprints it; with a shard, also counts the
// shard's requests.
Result<InputFingerprint> fingerprint_input(const std::string& input, const ShardSpec& shard = {});
// The settings of `o` that change answers, with the tokenizer's chat template text.
nlohmann::json answer_settings(const BatchJobOptions& o, const text::Tokenizer& tokenizer);
// A hash of a model directory's config, tokenizer and generation files and of the names and sizes
// of its weight files (their contents would take as long to hash as to load).
std::string model_files_fingerprint(const std::filesystem::path& dir);

// How the input of `now` differs from that of `recorded` (one phrase, or none); nothing is said
// about standard input. `answered_not_in_input` is how many custom_ids answered in the output the
// current input lacks (-1: not counted).
std::vector<std::string> input_differences(const JobIdentity& recorded, const JobIdentity& now,
                                           int64_t answered_not_in_input);
// How the settings differ, one phrase per setting ("--temperature was 0, now 0.7").
std::vector<std::string> settings_differences(const JobIdentity& recorded, const JobIdentity& now);

// How many of `ids` the lines of `input` do not name.
Result<int64_t> count_missing_ids(const std::string& input, const std::unordered_set<std::string>& ids);

std::string job_file_path(const std::string& output);  // OUTPUT.strata-job.json
// nullopt when there is no job file; an error when there is one strata cannot read.
Result<std::optional<JobIdentity>> read_job_file(const std::string& output);
Status write_job_file(const std::string& output, const JobIdentity& identity);

}  // namespace strata::runtime
