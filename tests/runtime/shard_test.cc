// Shards of a generate job: the hash of custom_id partitions any input for N = 1..16, the same
// whatever the line order; --shard values are checked; shard file names; the shard in the job file.
#include "runtime/shard.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "runtime/job_identity.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> ids(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("req-" + std::to_string(i));
  out.push_back("");
  out.push_back("東京");
  out.push_back("a\"quoted\"\nid");
  return out;
}

TEST(Shard, HashIsFixed) {
  // The partition of jobs half done depends on these values: they must never change.
  EXPECT_EQ(shard_hash(""), 0xc3817c016ba4ff30ull);
  EXPECT_EQ(shard_hash("req-0"), 0x4661accdfa571290ull);
  EXPECT_EQ(shard_of("req-0", 8), shard_of(std::string("req-0"), 8));
}

TEST(Shard, PartitionsEveryInputForOneToSixteenShards) {
  const auto all = ids(2000);
  for (int32_t n = 1; n <= 16; ++n) {
    std::vector<int64_t> per(static_cast<size_t>(n), 0);
    for (const std::string& id : all) {
      int owners = 0;
      for (int32_t i = 0; i < n; ++i) owners += ShardSpec{i, n}.owns(id) ? 1 : 0;
      ASSERT_EQ(owners, 1) << id << " in " << n << " shards";
      ++per[static_cast<size_t>(shard_of(id, n))];
    }
    // Balanced within a few standard deviations of the mean.
    const double mean = static_cast<double>(all.size()) / n;
    for (int64_t c : per) EXPECT_NEAR(static_cast<double>(c), mean, 5 * std::sqrt(mean) + 1) << n;
  }
  EXPECT_TRUE(ShardSpec{}.owns("anything"));  // not sharded: the whole job
}

TEST(Shard, SameShardsWhateverTheLineOrderOrWhatIsDone) {
  const auto dir = testing::make_temp_dir("strata-shard");
  std::vector<std::string> lines;
  for (int i = 0; i < 300; ++i) lines.push_back(R"({"custom_id": "id-)" + std::to_string(i) + R"(", "prompt": "p"})");
  auto write = [&](const fs::path& p, const std::vector<std::string>& ls) {
    std::ofstream f(p);
    for (const auto& l : ls) f << l << "\n";
    return p.string();
  };
  const std::string in1 = write(dir / "a.jsonl", lines);
  std::shuffle(lines.begin(), lines.end(), std::mt19937(7));
  const std::string in2 = write(dir / "b.jsonl", lines);
  for (int32_t n = 1; n <= 16; ++n) {
    int64_t total = 0;
    for (int32_t i = 0; i < n; ++i) {
      auto a = fingerprint_input(in1, {i, n}), b = fingerprint_input(in2, {i, n});
      ASSERT_TRUE(a.is_ok() && b.is_ok());
      EXPECT_EQ(a->shard_requests, b->shard_requests);
      EXPECT_EQ(a->ids, b->ids);
      total += a->shard_requests;
    }
    EXPECT_EQ(total, 300) << n;
  }
}

TEST(Shard, ParsesIndexOverCountFromZero) {
  auto s = parse_shard("3/8");
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->index, 3);
  EXPECT_EQ(s->count, 8);
  EXPECT_EQ(s->to_string(), "3/8");
  EXPECT_TRUE(parse_shard("0/1").is_ok());
  for (const char* bad : {"", "3", "3/", "/8", "8/8", "-1/8", "1/0", "a/8", "1/8x", "1.5/8", "0/70000", " 1/8"}) {
    auto r = parse_shard(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) EXPECT_NE(r.status().message().find("--shard"), std::string::npos) << r.status().message();
  }
  EXPECT_NE(parse_shard("8/8").status().message().find("numbered from 0"), std::string::npos);
}

TEST(Shard, OutputPathKeepsZstdSuffixLast) {
  EXPECT_EQ(shard_output_path("out.jsonl", {3, 8}), "out.jsonl.shard-3-of-8");
  EXPECT_EQ(shard_output_path("d/out.jsonl.zst", {0, 2}), "d/out.jsonl.shard-0-of-2.zst");
}

TEST(Shard, JobFileRecordsTheShard) {
  const auto dir = testing::make_temp_dir("strata-shard-job");
  JobIdentity id;
  id.input.path = "in.jsonl";
  id.input.requests = 10;
  id.input.shard = {2, 4};
  id.input.shard_requests = 3;
  const std::string out = (dir / "o.jsonl.shard-2-of-4").string();
  ASSERT_TRUE(write_job_file(out, id).is_ok());
  auto back = read_job_file(out);
  ASSERT_TRUE(back.is_ok() && back->has_value());
  EXPECT_EQ((*back)->input.shard.index, 2);
  EXPECT_EQ((*back)->input.shard.count, 4);
  EXPECT_EQ((*back)->input.shard_requests, 3);
  JobIdentity other = id;
  other.input.shard = {1, 4};
  auto d = input_differences(id, other, -1);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].find("shard 2/4"), std::string::npos) << d[0];
  EXPECT_TRUE(input_differences(id, id, -1).empty());
}

}  // namespace
}  // namespace strata::runtime
