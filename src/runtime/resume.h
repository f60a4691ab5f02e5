// --resume of a `strata generate` job: which requests an existing output answers, keyed by
// custom_id alone (a line without a readable custom_id by its line number), and whether that
// output may be continued at all. An output is continued only when every intact line of it is a
// strata result, and its job file (job_identity.h) says the same input and the same settings,
// unless the user insists (--resume-anyway). Error lines of scope "job" (a bad flag, the model)
// are not answers: they are removed from the output and their requests run again. Not thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "runtime/job_identity.h"
#include "text/line_io.h"

namespace strata::runtime {

struct ResumeState {
  std::unordered_set<std::string> done_ids;               // answered for good
  std::unordered_map<std::string, int64_t> duplicates;    // duplicate_custom_id lines per custom_id
  std::unordered_set<int64_t> done_lines_without_id;      // answered lines whose custom_id is unknown
  int64_t answered = 0;                                   // records kept
  int64_t retried = 0;                                    // job-level error records to run again
};

// Reads `output` (not changing it) and refuses one that is not strata's. Then checks the identity
// of the job that wrote it against `now`: a different input, or different settings when the
// output holds answers made with the old ones, is an error listing each difference, unless
// `anyway`, when it is a warning. Then cuts a torn last record and removes job-level error lines
// (atomically), and returns what the output answers.
Result<ResumeState> prepare_resume(const std::string& output, const JobIdentity& now,
                                   bool anyway, Logger& log);

}  // namespace strata::runtime
