#include "runtime/merge.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "runtime/job_identity.h"
#include "runtime/shard.h"
#include "text/batch_request.h"
#include "text/line_io.h"

namespace strata::runtime {

namespace fs = std::filesystem;

namespace {

constexpr size_t kProblemsShown = 12;

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// One record of a shard file.
struct Found {
  int32_t shard = 0;
  int64_t record = 0;  // from 1, in its file
  bool duplicate_error = false;  // a duplicate_custom_id error line (the input repeats the id)
  std::string text;
};

std::string where(const std::string& file, int64_t record) { return file + " record " + std::to_string(record); }

// The `generate` command that finishes shard `s` (for messages).
std::string finish_hint(const MergeOptions& o, const ShardSpec& s) {
  return "finish it with `strata generate --input " + o.input + " --output " + o.output + " --shard " +
         s.to_string() + " --resume` and the job's other flags";
}

}  // namespace

Result<int32_t> find_shard_count(const std::string& output) {
  fs::path p(output);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  std::string base = p.filename().string(), suffix;
  if (base.size() > 4 && base.ends_with(".zst")) {
    base.resize(base.size() - 4);
    suffix = ".zst";
  }
  const std::string head = base + ".shard-";
  std::set<int32_t> counts;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(head) || !name.ends_with(suffix)) continue;
    std::string rest = name.substr(head.size(), name.size() - head.size() - suffix.size());  // I-of-N
    const size_t of = rest.find("-of-");
    if (of == std::string::npos) continue;
    Result<ShardSpec> s = parse_shard(rest.substr(0, of) + "/" + rest.substr(of + 4));
    if (s.is_ok() && name == fs::path(shard_output_path(base + suffix, *s)).filename().string()) counts.insert(s->count);
  }
  if (ec) return io_error(dir.string() + ": cannot list the directory: " + ec.message(), ec.value());
  if (counts.empty())
    return not_found("no shard files " + (dir / (head + "I-of-N" + suffix)).string() +
                     " found; run `strata generate --shard I/N` first, or give --shards N to name the missing ones");
  if (counts.size() > 1) {
    std::string list;
    for (int32_t n : counts) list += (list.empty() ? "" : ", ") + std::to_string(n);
    return invalid_argument("the shard files beside " + output + " belong to different shard counts (" + list +
                            "); give --shards N for the job's, and remove the others");
  }
  return *counts.begin();
}

Result<MergeSummary> merge_shards(const MergeOptions& o, Logger& log) {
  if (o.input.empty() || o.input == "-") return invalid_argument("--input must be the job's input file");
  if (o.output.empty() || o.output == "-") return invalid_argument("--output must be the job's output file");
  std::error_code ec;
  if (!fs::is_regular_file(o.input, ec)) return not_found(o.input + ": the input file does not exist");
  if (fs::exists(o.output, ec) && !o.overwrite)
    return invalid_argument(o.output + " already exists: pass --overwrite to replace it with the merged shards");
  int32_t n = o.shards;
  if (n == 0) {
    STRATA_ASSIGN_OR_RETURN(n, find_shard_count(o.output));
  } else if (n < 1 || n > kMaxShards) {
    return invalid_argument("--shards must be 1 to " + std::to_string(kMaxShards) + ", got " + std::to_string(n));
  }

  // The input: each line's custom_id, in order, and how many lines name each.
  std::vector<std::string> order;
  std::unordered_map<std::string, int64_t> expected;
  {
    STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o.input));
    std::string line;
    for (;;) {
      STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
      if (!more) break;
      if (is_blank(line)) continue;
      std::optional<std::string> id = request_custom_id(line);
      if (!id)
        return invalid_argument(o.input + ":" + std::to_string(reader->line_number()) +
                                ": this line has no custom_id (a string); sharded jobs key every request by it");
      ++expected[*id];
      order.push_back(std::move(*id));
    }
  }
  JobIdentity job;
  STRATA_ASSIGN_OR_RETURN(job.input, fingerprint_input(o.input));

  std::vector<std::string> problems;
  auto problem = [&](std::string p) { problems.push_back(std::move(p)); };
  std::unordered_map<std::string, std::vector<Found>> found;
  std::vector<std::string> files(static_cast<size_t>(n));
  MergeSummary sum;
  sum.shards = n;
  sum.per_shard.assign(static_cast<size_t>(n), 0);
  std::optional<JobIdentity> first;  // the first shard's identity: the others must have its settings
  std::string first_file;
  for (int32_t i = 0; i < n; ++i) {
    const ShardSpec spec{i, n};
    const std::string file = shard_output_path(o.output, spec);
    files[static_cast<size_t>(i)] = file;
    if (!fs::exists(file, ec)) {
      problem("shard " + spec.to_string() + ": " + file + " does not exist; " + finish_hint(o, spec));
      continue;
    }
    // Its job file: a shard of this input, with the settings of the others.
    Result<std::optional<JobIdentity>> id = read_job_file(file);
    if (!id.is_ok()) {
      problem(id.status().message());
      continue;
    }
    if (!*id) {
      problem(file + " has no job file (" + job_file_path(file) + "), so it cannot be checked to be a shard of this job");
      continue;
    }
    const JobIdentity& rec = **id;
    if (rec.input.shard.index != i || rec.input.shard.count != n) {
      problem(file + ": its job file says it answers " +
              (rec.input.shard.sharded() ? "shard " + rec.input.shard.to_string() : std::string("the whole input")) +
              ", not shard " + spec.to_string());
      continue;
    }
    JobIdentity whole = rec;
    whole.input.shard = {};
    JobIdentity now = job;
    for (const std::string& d : input_differences(whole, now, -1))
      problem(file + " was written for a different input than " + o.input + ": " + d);
    if (first) {
      for (const std::string& d : settings_differences(*first, rec))
        problem(file + " was made with other settings than " + first_file + ": " + d);
    } else {
      first = rec;
      first_file = file;
    }
    // Its records: whole, strata's, of this shard and this input.
    STRATA_ASSIGN_OR_RETURN(text::RecordScan scan, text::scan_records(file));
    if (scan.intact_bytes < scan.file_bytes)
      problem(file + " ends with a torn record (" + std::to_string(scan.file_bytes - scan.intact_bytes) +
              " bytes after record " + std::to_string(scan.records.size()) +
              ": a write cut short, the shard's process was killed); " + finish_hint(o, spec) +
              ", which repairs the file and answers what is missing");
    for (size_t r = 0; r < scan.records.size(); ++r) {
      const int64_t rec_no = static_cast<int64_t>(r) + 1;
      std::optional<text::ResultRecord> res = text::parse_result_line(scan.records[r]);
      if (!res) {
        problem(where(file, rec_no) + " is not a strata result line");
        continue;
      }
      if (!res->custom_id) {
        problem(where(file, rec_no) + " has no custom_id");
        continue;
      }
      const std::string& cid = *res->custom_id;
      if (!expected.count(cid)) {
        problem(where(file, rec_no) + ": custom_id '" + cid + "' is not a request of " + o.input);
        continue;
      }
      if (const int32_t owner = shard_of(cid, n); owner != i) {
        problem(where(file, rec_no) + ": custom_id '" + cid + "' belongs to shard " + std::to_string(owner) + "/" +
                std::to_string(n) + ", not to this file's shard " + spec.to_string());
        continue;
      }
      ++sum.per_shard[static_cast<size_t>(i)];
      if (res->ok) ++sum.ok;
      else ++sum.failed;
      if (res->job_level) ++sum.failed_job;
      found[cid].push_back({i, rec_no, res->error_code == "duplicate_custom_id", std::move(scan.records[r])});
    }
  }
  // Every request exactly once (an id the input repeats: as many times as it appears).
  int64_t missing = 0, duplicated = 0;
  for (const std::string& cid : order) {  // input order, each id once
    auto e = expected.find(cid);
    if (e == expected.end() || e->second < 0) continue;
    const int64_t want = e->second;
    e->second = -1;  // reported
    auto f = found.find(cid);
    const int64_t got = f == found.end() ? 0 : static_cast<int64_t>(f->second.size());
    const ShardSpec spec{shard_of(cid, n), n};
    if (got < want) {
      ++missing;
      problem("custom_id '" + cid + "' is not answered" + (want > 1 ? " as often as the input names it (" +
                  std::to_string(got) + " of " + std::to_string(want) + ")" : std::string()) + ": its shard " +
              spec.to_string() + " (" + files[static_cast<size_t>(spec.index)] + ") lacks it; " + finish_hint(o, spec));
    } else if (got > want) {
      ++duplicated;
      std::string at;
      for (const Found& x : f->second) at += (at.empty() ? "" : ", ") + where(files[static_cast<size_t>(x.shard)], x.record);
      problem("custom_id '" + cid + "' is answered " + std::to_string(got) + " times" +
              (want > 1 ? " (the input names it " + std::to_string(want) + " times)" : std::string()) + ": " + at);
    }
  }
  if (!problems.empty()) {
    std::string msg = std::to_string(problems.size()) + " problem" + (problems.size() > 1 ? "s" : "") +
                      " with the shards of " + o.output + " (" + std::to_string(missing) + " ids missing, " +
                      std::to_string(duplicated) + " duplicated); nothing was written:";
    for (size_t k = 0; k < problems.size() && k < kProblemsShown; ++k) msg += "\n  " + problems[k];
    if (problems.size() > kProblemsShown)
      msg += "\n  ... and " + std::to_string(problems.size() - kProblemsShown) + " more";
    return invalid_argument(msg);
  }

  std::vector<std::string> records;
  records.reserve(order.size());
  if (o.input_order) {
    for (auto& [cid, list] : found)  // per id: its answer first, then the error lines of repeats
      std::stable_sort(list.begin(), list.end(),
                       [](const Found& a, const Found& b) { return !a.duplicate_error && b.duplicate_error; });
    std::unordered_map<std::string, size_t> next;
    for (const std::string& cid : order) records.push_back(std::move(found[cid][next[cid]++].text));
  } else {
    std::vector<std::vector<Found*>> by_shard(static_cast<size_t>(n));
    for (auto& [cid, list] : found)
      for (Found& x : list) by_shard[static_cast<size_t>(x.shard)].push_back(&x);
    for (auto& list : by_shard) {
      std::sort(list.begin(), list.end(), [](const Found* a, const Found* b) { return a->record < b->record; });
      for (Found* x : list) records.push_back(std::move(x->text));
    }
  }
  sum.records = static_cast<int64_t>(records.size());
  STRATA_RETURN_IF_ERROR(text::rewrite_records(o.output, records));
  job.answers = first ? first->answers : nlohmann::json::object();
  STRATA_RETURN_IF_ERROR(write_job_file(o.output, job));
  if (sum.failed_job > 0)
    log.warn(std::to_string(sum.failed_job) + " requests failed because of a job setting or the model (error lines "
             "with \"scope\": \"job\"); fix the setting and resume the shards (or the merged output) to retry them");
  return sum;
}

std::string MergeSummary::to_text(const std::string& output) const {
  std::string out = "merged " + std::to_string(records) + " records (" + std::to_string(ok) + " ok, " +
                    std::to_string(failed) + " failed) from " + std::to_string(shards) + " shard files into " +
                    output + "; every request of the input answered exactly once\n  records per shard:";
  for (size_t i = 0; i < per_shard.size(); ++i) out += " " + std::to_string(i) + ":" + std::to_string(per_shard[i]);
  return out + "\n";
}

}  // namespace strata::runtime
