// `strata merge`: the shard outputs of a job (OUTPUT.shard-I-of-N, shard.h) combined into the
// job's output, checked to answer every request of the input exactly once. Each shard file must
// be whole (no torn last record: resume that shard first), carry the job file of a shard of this
// input with the same settings as the others, and hold only its own shard's custom_ids. A missing,
// duplicated or foreign id is an error naming it and the shard file(s); nothing is written then.
// The output is written atomically (a temporary file renamed over it) with the whole job's job
// file beside it, so `generate --resume` without --shard can continue it. Records are held in
// memory while merging. Not thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"

namespace strata::runtime {

struct MergeOptions {
  std::string input;          // the job's requests (a file)
  std::string output;         // the job's output; the shards are beside it
  int32_t shards = 0;         // N; 0 = find the shard files beside the output
  bool input_order = true;    // records in the input's line order, else shard by shard as written
  bool overwrite = false;     // replace an existing output
};

struct MergeSummary {
  int32_t shards = 0;
  int64_t records = 0;        // written
  int64_t ok = 0;
  int64_t failed = 0;         // error lines (of them, failed_job of scope "job")
  int64_t failed_job = 0;
  std::vector<int64_t> per_shard;  // records of each shard file

  std::string to_text(const std::string& output) const;
};

// N from the files OUTPUT.shard-I-of-N beside `output`; an error when there are none or when they
// name different N.
Result<int32_t> find_shard_count(const std::string& output);

Result<MergeSummary> merge_shards(const MergeOptions& options, Logger& log);

}  // namespace strata::runtime
