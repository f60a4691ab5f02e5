#include "runtime/resume.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "text/batch_request.h"

namespace strata::runtime {

namespace {

Status not_strata(const std::string& output, const std::string& why) {
  return invalid_argument(output + ": " + why +
                          ", so it is not an output of strata generate; --resume only continues those. Choose "
                          "another --output, or pass --overwrite to replace this file");
}

// Up to `n` bytes of `path` from `offset`.
Result<std::string> read_tail(const std::string& path, uint64_t offset, size_t n) {
  std::string out(n, '\0');
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(path + ": cannot open: " + std::strerror(errno), errno);
  const ssize_t r = ::pread(fd, out.data(), n, static_cast<off_t>(offset));
  const int err = errno;
  ::close(fd);
  if (r < 0) return io_error(path + ": read failed: " + std::strerror(err), err);
  out.resize(static_cast<size_t>(r));
  return out;
}

// Checks the recorded identity against `now`. A different input is an error; so are different
// settings when the output holds answers made with the old ones (`answers` > 0: with none, only
// error lines, the job simply goes on with the new settings). With `anyway` both are warnings. A
// missing job file (an output of an older strata) is a warning.
Status check_identity(const std::string& output, const JobIdentity& now,
                      const std::unordered_set<std::string>& answered_ids, int64_t answers, bool anyway,
                      Logger& log) {
  Result<std::optional<JobIdentity>> read = read_job_file(output);
  if (!read.is_ok()) {
    if (!anyway)
      return read.status().with_context("--resume: the job file of " + output +
                                        " cannot be read, so the job that wrote it is unknown (pass --resume-anyway "
                                        "to continue it regardless)");
    log.warn("resume: " + read.status().message() + "; continuing (--resume-anyway)");
    return Status::ok();
  }
  const std::optional<JobIdentity>& recorded = *read;
  if (!recorded) {
    log.warn("resume: " + output + " has no job file (" + job_file_path(output) +
             "), so strata cannot check that the input and the settings are those of the run that wrote it; "
             "continuing, keyed by custom_id");
    return Status::ok();
  }
  if (now.input.from_stdin || recorded->input.from_stdin)
    log.warn("resume: the input is standard input, which cannot be checked against the job's; continuing, keyed "
             "by custom_id");
  std::vector<std::string> input = input_differences(*recorded, now, -1);
  if (!input.empty() && recorded->input.ids != now.input.ids) {
    // Count the answered ids the input lacks, for a message that says how far apart they are.
    STRATA_ASSIGN_OR_RETURN(int64_t missing, count_missing_ids(now.input.path, answered_ids));
    input = input_differences(*recorded, now, missing);
  }
  std::vector<std::string> settings = settings_differences(*recorded, now);
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& d : v) out += (out.empty() ? "" : "; ") + d;
    return out;
  };
  if (!settings.empty() && answers == 0 && input.empty()) {
    log.info("resume: the settings changed (" + join(settings) + "); " + output +
             " holds no answers yet, only error lines, so the job goes on with the new settings");
    return Status::ok();
  }
  std::vector<std::string> all = input;
  all.insert(all.end(), settings.begin(), settings.end());
  if (all.empty()) return Status::ok();
  if (anyway) {
    log.warn("resume: continuing " + output + " although this is not the job that wrote it (--resume-anyway): " +
             join(all) + ". Requests are matched by custom_id; answers already written stay as they are");
    return Status::ok();
  }
  return invalid_argument("--resume: " + output + " was written by a different job: " + join(all) + ". Resume " +
                          "with the input and settings of that job, write to another --output, or pass " +
                          "--resume-anyway to continue it regardless (requests matched by custom_id; the " +
                          std::to_string(answers) + " answers already written stay as they are)");
}

}  // namespace

Result<ResumeState> prepare_resume(const std::string& output, const JobIdentity& now,
                                   bool anyway, Logger& log) {
  ResumeState st;
  STRATA_ASSIGN_OR_RETURN(text::RecordScan scan, text::scan_records(output));
  // Bytes that are not a zstd frame at all: a foreign file, unless strata's records come first
  // (then they are the tail of an interrupted write, and are cut off below).
  if (scan.foreign_tail && scan.records.empty())
    return not_strata(output, "it does not start with a zstd frame as strata writes them");
  std::vector<text::ResultRecord> parsed;
  parsed.reserve(scan.records.size());
  for (size_t i = 0; i < scan.records.size(); ++i) {
    std::optional<text::ResultRecord> r = text::parse_result_line(scan.records[i]);
    if (!r) {
      std::string head = scan.records[i].substr(0, 60);
      return not_strata(output, "record " + std::to_string(i + 1) + " (" + head +
                                    (scan.records[i].size() > 60 ? "..." : "") + ") is not a strata result line");
    }
    parsed.push_back(std::move(*r));
  }
  // A torn tail is the start of a result line (OpenAI's key order, "id" first; earlier outputs
  // have "custom_id" first), or a zstd frame.
  if (!text::is_zstd_path(output) && scan.intact_bytes < scan.file_bytes) {
    const std::string heads[] = {R"({"id":"batch_req_)", R"({"custom_id":)"};
    STRATA_ASSIGN_OR_RETURN(std::string tail, read_tail(output, scan.intact_bytes, heads[0].size()));
    auto starts = [&](const std::string& head) { return head.compare(0, std::min(tail.size(), head.size()), tail, 0, std::min(tail.size(), head.size())) == 0; };
    if (!starts(heads[0]) && !starts(heads[1]))
      return not_strata(output, "its last " + std::to_string(scan.file_bytes - scan.intact_bytes) +
                                    " bytes are not the start of a strata result line");
  }
  std::unordered_set<std::string> ids;
  int64_t answers = 0;
  for (const auto& r : parsed) {
    if (r.custom_id && !r.job_level) ids.insert(*r.custom_id);
    answers += r.ok;
  }
  STRATA_RETURN_IF_ERROR(check_identity(output, now, ids, answers, anyway, log));

  for (const text::ResultRecord& r : parsed) {
    if (r.job_level) {
      ++st.retried;
      continue;
    }
    ++st.answered;
    if (!r.custom_id) st.done_lines_without_id.insert(r.line);
    else if (r.error_code == "duplicate_custom_id") ++st.duplicates[*r.custom_id];
    else st.done_ids.insert(*r.custom_id);
  }
  if (st.retried > 0) {
    std::vector<std::string> kept;
    for (size_t i = 0; i < parsed.size(); ++i)
      if (!parsed[i].job_level) kept.push_back(std::move(scan.records[i]));
    STRATA_RETURN_IF_ERROR(text::rewrite_records(output, kept));
    log.info("resume: " + std::to_string(st.retried) + " requests failed because of a job setting or the model; " +
             "their error lines were removed and they run again");
  } else if (scan.intact_bytes < scan.file_bytes) {
    if (::truncate(output.c_str(), static_cast<off_t>(scan.intact_bytes)) != 0)
      return io_error(output + ": cannot truncate the torn last record", errno);
    log.warn("resume: removed a torn last record (" + std::to_string(scan.file_bytes - scan.intact_bytes) +
             " bytes) from " + output);
  }
  log.info("resume: " + std::to_string(st.answered) + " requests already answered in " + output);
  return st;
}

}  // namespace strata::runtime
