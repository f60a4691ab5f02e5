// Shards of a `strata generate` job: the input's requests split into N parts by a fixed hash of
// their custom_id (FNV-1a 64 of the id's bytes, spread by the splitmix64 finaliser, modulo N), so
// a request's shard depends on nothing but its id and N: not on line order, not on which
// requests are already answered, not on the machine or the build. Shards are numbered from 0, as
// Slurm numbers the tasks of `--array=0-(N-1)` ($SLURM_ARRAY_TASK_ID). Shard I of N writes
// OUTPUT.shard-I-of-N (before a ".zst" suffix: out.jsonl.shard-I-of-N.zst). Pure functions;
// thread safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::runtime {

constexpr int32_t kMaxShards = 65536;

struct ShardSpec {
  int32_t index = 0;
  int32_t count = 0;  // 0: the whole job (no --shard)

  bool sharded() const { return count > 0; }
  bool owns(std::string_view custom_id) const;  // true for every id when not sharded
  std::string to_string() const;                // "3/8"
};

// The fixed hash of a custom_id that shards use (stable across versions: changing it would
// re-partition jobs half done).
uint64_t shard_hash(std::string_view custom_id);
int32_t shard_of(std::string_view custom_id, int32_t count);

// "I/N" with 0 <= I < N <= kMaxShards. Errors name `flag` and say what is allowed.
Result<ShardSpec> parse_shard(const std::string& value, const std::string& flag = "--shard");

// OUTPUT.shard-I-of-N, the ".zst" suffix kept last.
std::string shard_output_path(const std::string& output, const ShardSpec& shard);

// The custom_id of a request line, when it is a JSON object with a string one; what sharding and
// the job's fingerprint key a line by.
std::optional<std::string> request_custom_id(const std::string& line);

}  // namespace strata::runtime
