#include "runtime/job_identity.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>

#include "common/json_read.h"
#include "storage/checksum.h"
#include "text/line_io.h"

namespace strata::runtime {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "strata-generate-job";
constexpr int kVersion = 1;

uint64_t hash_bytes(std::string_view s) {
  return storage::xxhash64(std::as_bytes(std::span<const char>(s.data(), s.size())));
}

// splitmix64: spreads a hash so that sums of many stay a good multiset hash.
uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::string show(const json& v) {
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", v.get<double>());
    return buf;
  }
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace

Result<InputFingerprint> fingerprint_input(const std::string& input, const ShardSpec& shard) {
  InputFingerprint f;
  f.path = input;
  f.shard = shard;
  if (input == "-") {
    f.from_stdin = true;
    return f;
  }
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(input));
  std::string line;
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
    if (!more) break;
    if (is_blank(line)) continue;
    ++f.requests;
    const std::optional<std::string> id = request_custom_id(line);
    if (id && shard.owns(*id)) ++f.shard_requests;
    if (!id && f.first_line_without_id == 0) f.first_line_without_id = reader->line_number();
    if (id) {
      f.ids += mix(hash_bytes(*id));
      f.contents += mix(hash_bytes(line));
    } else {
      f.contents += mix(hash_bytes(line) ^ mix(static_cast<uint64_t>(reader->line_number())));
    }
  }
  return f;
}

// The text of the template that renders chats: --chat-template's file, else the model's own.
std::string chat_template_text(const BatchJobOptions& o, const text::Tokenizer& tokenizer) {
  std::error_code ec;
  if (!o.chat_template.empty() && fs::is_regular_file(o.chat_template, ec)) {
    std::ifstream in(o.chat_template, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  return tokenizer.chat_template();
}

json answer_settings(const BatchJobOptions& o, const text::Tokenizer& tokenizer) {
  json s = {{"model", o.model_name},
          {"model_files_xxh64", o.model_fingerprint},
          {"max_tokens", o.max_tokens},
          {"temperature", o.temperature},
          {"top_p", o.top_p},
          {"top_k", o.top_k},
          {"seed", o.seed},
          {"stop", o.stop},
          {"ignore_eos", o.ignore_eos},
          {"chat_template", o.chat_template.empty() ? "auto" : o.chat_template},
          {"chat_template_xxh64", storage::checksum_hex(hash_bytes(chat_template_text(o, tokenizer)))},
          {"device", o.device},
          {"compress", o.compress}};
  // Ignored fields answer requests that would otherwise be error lines; recorded only when set,
  // so that the jobs written before this setting existed resume as they were.
  if (o.ignore_unknown_fields) s["ignore_unknown_fields"] = true;
  return s;
}

std::string model_files_fingerprint(const fs::path& dir) {
  uint64_t h = 0;
  std::error_code ec;
  std::vector<fs::path> files;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    const std::string name = p.filename().string();
    const bool text_file = p.extension() == ".json" || p.extension() == ".jinja";
    const uint64_t size = fs::file_size(p, ec);
    h = mix(h ^ hash_bytes(name)) ^ mix(size);
    if (text_file && size < (64u << 20)) {
      Result<std::string> text = read_regular_file(p, 64u << 20);
      if (text.is_ok()) h = mix(h ^ hash_bytes(*text));
    }
  }
  return storage::checksum_hex(h);
}

json JobIdentity::to_json(const std::string& output) const {
  json in = {{"path", input.path}};
  if (input.from_stdin) {
    in["requests"] = nullptr;
  } else {
    in["requests"] = input.requests;
    in["ids_xxh64"] = storage::checksum_hex(input.ids);
    in["contents_xxh64"] = storage::checksum_hex(input.contents);
  }
  if (input.shard.sharded())
    in["shard"] = {{"index", input.shard.index}, {"count", input.shard.count}, {"requests", input.shard_requests}};
  return {{"format", kFormat}, {"version", kVersion}, {"output", output}, {"input", in}, {"answers", answers}};
}

Result<JobIdentity> JobIdentity::from_json(const json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("format") || j["format"] != kFormat)
    return corrupt(where + ": not a strata job file (no \"format\": \"" + std::string(kFormat) + "\")");
  STRATA_ASSIGN_OR_RETURN(int64_t version, json_int_in(j, "version", 1, 1000000, where));
  if (version != kVersion)
    return unsupported(where + ": job file version " + std::to_string(version) + "; this strata reads version " +
                       std::to_string(kVersion));
  if (!j.contains("input") || !j["input"].is_object() || !j.contains("answers") || !j["answers"].is_object())
    return corrupt(where + ": fields 'input' and 'answers' must be objects");
  JobIdentity id;
  const json& in = j["input"];
  STRATA_ASSIGN_OR_RETURN(id.input.path, json_string_or(in, "path", "", where + ": input"));
  if (!in.contains("requests") || in["requests"].is_null()) {
    id.input.from_stdin = true;
  } else {
    STRATA_ASSIGN_OR_RETURN(id.input.requests, json_int_in(in, "requests", 0, INT64_MAX, where + ": input"));
    STRATA_ASSIGN_OR_RETURN(std::string ids, json_string(in, "ids_xxh64", where + ": input"));
    STRATA_ASSIGN_OR_RETURN(std::string contents, json_string(in, "contents_xxh64", where + ": input"));
    auto a = storage::parse_checksum_hex(ids), b = storage::parse_checksum_hex(contents);
    if (!a || !b) return corrupt(where + ": input hashes must be 16 hex digits");
    id.input.ids = *a;
    id.input.contents = *b;
  }
  if (in.contains("shard")) {
    const std::string at = where + ": input.shard";
    if (!in["shard"].is_object()) return corrupt(at + " must be an object");
    STRATA_ASSIGN_OR_RETURN(int64_t count, json_int_in(in["shard"], "count", 1, kMaxShards, at));
    STRATA_ASSIGN_OR_RETURN(int64_t index, json_int_in(in["shard"], "index", 0, count - 1, at));
    STRATA_ASSIGN_OR_RETURN(id.input.shard_requests, json_int_in(in["shard"], "requests", 0, INT64_MAX, at));
    id.input.shard = ShardSpec{static_cast<int32_t>(index), static_cast<int32_t>(count)};
  }
  id.answers = j["answers"];
  return id;
}

std::vector<std::string> input_differences(const JobIdentity& recorded, const JobIdentity& now,
                                           int64_t answered_not_in_input) {
  std::vector<std::string> out;
  const InputFingerprint &a = recorded.input, &b = now.input;
  auto part = [](const ShardSpec& s) { return s.sharded() ? "shard " + s.to_string() + " of the input" : std::string("the whole input"); };
  if (a.shard.sharded() != b.shard.sharded() || (a.shard.sharded() && (a.shard.index != b.shard.index || a.shard.count != b.shard.count)))
    out.push_back("the output answers " + part(a.shard) + ", this run " + part(b.shard) +
                  " (--shard must be the same to resume)");
  if (!a.from_stdin && !b.from_stdin) {
    if (a.requests != b.requests) {
      out.push_back("the input held " + std::to_string(a.requests) + " requests, now " + std::to_string(b.requests));
    } else if (a.ids != b.ids) {
      out.push_back("the input's custom_ids differ from those of the job that wrote the output");
    } else if (a.contents != b.contents) {
      out.push_back("the input has the same custom_ids but the requests' contents differ");
    }
    if (!out.empty() && answered_not_in_input > 0)
      out.back() += " (" + std::to_string(answered_not_in_input) + " custom_ids answered in the output are not in it)";
  }
  return out;
}

std::vector<std::string> settings_differences(const JobIdentity& recorded, const JobIdentity& now) {
  std::vector<std::string> out;
  static const std::map<std::string, std::string> kNames = {
      {"model", "--served-model-name"},          {"model_files_xxh64", "the model's files"},
      {"max_tokens", "--max-tokens"},       {"temperature", "--temperature"},
      {"top_p", "--top-p"},                 {"top_k", "--top-k"},
      {"seed", "--seed"},                   {"stop", "--stop"},
      {"ignore_eos", "--ignore-eos"},       {"chat_template", "--chat-template"},
      {"chat_template_xxh64", "the model's chat template text"},
      {"device", "--device"},               {"compress", "--compress"},
      {"ignore_unknown_fields", "--ignore-unknown-fields"}};
  std::vector<std::string> keys;
  for (auto it = recorded.answers.begin(); it != recorded.answers.end(); ++it) keys.push_back(it.key());
  for (auto it = now.answers.begin(); it != now.answers.end(); ++it)
    if (!recorded.answers.contains(it.key())) keys.push_back(it.key());
  for (const std::string& k : keys) {
    const json none = k == "ignore_unknown_fields" ? json(false) : json();  // recorded only when set
    const json& was = recorded.answers.contains(k) ? recorded.answers[k] : none;
    const json& is = now.answers.contains(k) ? now.answers[k] : none;
    if (was == is) continue;
    auto name = kNames.find(k);
    const std::string what = name == kNames.end() ? "'" + k + "'" : name->second;
    if (k.ends_with("_xxh64")) out.push_back(what + " changed");
    else out.push_back(what + " was " + show(was) + ", now " + show(is));
  }
  return out;
}

Result<int64_t> count_missing_ids(const std::string& input, const std::unordered_set<std::string>& ids) {
  if (input == "-") return int64_t{-1};
  std::unordered_set<std::string> present;
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(input));
  std::string line;
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
    if (!more) break;
    if (auto id = request_custom_id(line); id && ids.count(*id)) present.insert(*id);
  }
  return static_cast<int64_t>(ids.size() - present.size());
}

std::string job_file_path(const std::string& output) { return output + ".strata-job.json"; }

Result<std::optional<JobIdentity>> read_job_file(const std::string& output) {
  const std::string path = job_file_path(output);
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(path, ec))) return std::optional<JobIdentity>();
  STRATA_ASSIGN_OR_RETURN(json j, read_json_file(path, JsonLimits{.max_bytes = 1 << 20, .max_depth = 16}));
  STRATA_ASSIGN_OR_RETURN(JobIdentity id, JobIdentity::from_json(j, path));
  return std::optional<JobIdentity>(std::move(id));
}

Status write_job_file(const std::string& output, const JobIdentity& identity) {
  return text::write_file_atomically(job_file_path(output), identity.to_json(output).dump(1) + "\n");
}

}  // namespace strata::runtime
