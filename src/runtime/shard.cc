#include "runtime/shard.h"

#include <charconv>

#include <nlohmann/json.hpp>

#include "common/json_read.h"

namespace strata::runtime {

uint64_t shard_hash(std::string_view custom_id) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : custom_id) h = (h ^ c) * 1099511628211ull;
  h += 0x9E3779B97F4A7C15ull;  // splitmix64's finaliser: FNV's low bits alone are poorly mixed
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

int32_t shard_of(std::string_view custom_id, int32_t count) {
  return static_cast<int32_t>(shard_hash(custom_id) % static_cast<uint64_t>(count));
}

bool ShardSpec::owns(std::string_view custom_id) const {
  return !sharded() || shard_of(custom_id, count) == index;
}

std::string ShardSpec::to_string() const { return std::to_string(index) + "/" + std::to_string(count); }

Result<ShardSpec> parse_shard(const std::string& value, const std::string& flag) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(flag + " '" + value + "': " + why +
                            "; give I/N with shards numbered from 0, 0 <= I < N <= " + std::to_string(kMaxShards) +
                            " (as Slurm numbers --array=0-(N-1): --shard $SLURM_ARRAY_TASK_ID/N)");
  };
  const size_t slash = value.find('/');
  if (slash == std::string::npos) return bad("no '/'");
  auto number = [](std::string_view s, int64_t& out) {
    if (s.empty() || s.size() > 9) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  };
  int64_t i = 0, n = 0;
  const std::string_view v = value;
  if (!number(v.substr(0, slash), i)) return bad("the shard index is not a whole number");
  if (!number(v.substr(slash + 1), n)) return bad("the shard count is not a whole number");
  if (n < 1 || n > kMaxShards) return bad("the shard count must be 1 to " + std::to_string(kMaxShards));
  if (i < 0 || i >= n)
    return bad("the shard index must be 0 to " + std::to_string(n - 1) +
               (i == n ? " (shards are numbered from 0, not 1)" : ""));
  return ShardSpec{static_cast<int32_t>(i), static_cast<int32_t>(n)};
}

std::string shard_output_path(const std::string& output, const ShardSpec& shard) {
  const std::string tag = ".shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count);
  if (output.size() > 4 && output.ends_with(".zst")) return output.substr(0, output.size() - 4) + tag + ".zst";
  return output + tag;
}

std::optional<std::string> request_custom_id(const std::string& line) {
  Result<nlohmann::json> j = parse_json(line, "line", JsonLimits{.max_bytes = 64 << 20, .max_depth = 32});
  if (!j.is_ok() || !j->is_object()) return std::nullopt;
  auto it = j->find("custom_id");
  if (it == j->end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace strata::runtime
