// `strata generate --shard I/N` and `strata merge` on the demo model: three shards, one of them
// killed part-way and resumed, merged, equal a single-process greedy run (the same text per
// custom_id, input order); --shard values, inputs without custom_ids and a resume with another
// shard are refused with messages that name the flag, the line or the shard.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

using nlohmann::json;
using testing::answers_by_id;
using testing::result_records;
using testing::run_strata_env;
namespace fs = std::filesystem;

const fs::path kDemo = testing::test_data_dir() / ".." / ".." / "models" / "demo";
const char* kPrompts[] = {"In the beginning", "And the LORD said unto Moses,", "The LORD is my shepherd;",
                          "A wise man", "The meaning of life is", "Love is"};

class ShardCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-shard-cli");
    log_ = (dir_ / "log.txt").string();
    in_ = (dir_ / "in.jsonl").string();
    std::ofstream f(in_);
    for (int i = 0; i < 30; ++i)
      f << json{{"custom_id", "c" + std::to_string(i)}, {"prompt", kPrompts[i % 6]}, {"max_tokens", 4 + i % 5}}.dump()
        << "\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<std::string> job(const std::string& out, std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {"generate", "--model", kDemo.string(), "--input", in_, "--output", out,
                                  "--device", "cpu", "--temperature", "0", "--max-tokens", "8",
                                  "--batch-size", "4", "--threads", "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  fs::path dir_;
  std::string log_, in_;
};

TEST_F(ShardCli, ThreeShardsMergedEqualOneProcess) {
  const std::string ref = (dir_ / "ref.jsonl").string(), out = (dir_ / "out.jsonl").string();
  auto o = run_strata_env(job(ref, {"--quiet"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  // Shard 1 is killed after 2 records, then resumed.
  o = run_strata_env(job(out, {"--shard", "1/3", "--quiet"}), log_, {"STRATA_CRASH_AT=record_written:2"});
  ASSERT_EQ(o.code, 128 + SIGKILL) << o.output;
  int64_t total = 0;
  for (int i = 0; i < 3; ++i) {
    o = run_strata_env(job(out, {"--shard", std::to_string(i) + "/3", "--resume"}), log_);
    ASSERT_EQ(o.code, 0) << o.output;
    EXPECT_NE(o.output.find("shard " + std::to_string(i) + "/3: "), std::string::npos) << o.output;
    total += static_cast<int64_t>(result_records(out + ".shard-" + std::to_string(i) + "-of-3").size());
  }
  EXPECT_EQ(total, 30);
  EXPECT_FALSE(fs::exists(out));
  o = run_strata_env({"merge", "--input", in_, "--output", out}, log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("merged 30 records"), std::string::npos) << o.output;
  EXPECT_EQ(answers_by_id(out), answers_by_id(ref));
  const auto recs = result_records(out);
  ASSERT_EQ(recs.size(), 30u);
  for (size_t i = 0; i < recs.size(); ++i) EXPECT_EQ(recs[i]["custom_id"], "c" + std::to_string(i));
  // The merged output is the whole job's: a plain --resume finds nothing left to do.
  o = run_strata_env(job(out, {"--resume"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("0 ok, 0 failed, 30 already done"), std::string::npos) << o.output;
  // A missing shard: merge names it and writes nothing.
  fs::remove(out + ".shard-2-of-3");
  o = run_strata_env({"merge", "--input", in_, "--output", out, "--shards", "3", "--overwrite"}, log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find(out + ".shard-2-of-3 does not exist"), std::string::npos) << o.output;
  EXPECT_EQ(answers_by_id(out), answers_by_id(ref));  // the earlier merge is untouched
}

TEST_F(ShardCli, TwoEnginesOnTheCpuEqualOneProcess) {
  const std::string ref = (dir_ / "ref.jsonl").string(), out = (dir_ / "out.jsonl").string();
  const std::string summary = (dir_ / "summary.json").string();
  auto o = run_strata_env(job(ref, {"--quiet"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  auto a = testing::with_flags(job(out), {"--devices", "cpu,cpu", "--json-summary", summary, "--threads", "2"});
  a.erase(std::find(a.begin(), a.end(), "--device"), std::find(a.begin(), a.end(), "--device") + 2);
  o = run_strata_env(a, log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("engine 1 cpu"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("total: 30 requests"), std::string::npos) << o.output;
  EXPECT_EQ(answers_by_id(out), answers_by_id(ref));
  const json s = json::parse(testing::file_text(summary));
  EXPECT_EQ(s["engines"].size(), 2u);
  EXPECT_EQ(s["total"]["ok"], 30);
  EXPECT_EQ(s["engines"][0]["shard"]["count"], 2);
  // Again with --resume: nothing left to do, the same output.
  o = run_strata_env(testing::with_flags(a, {"--resume"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_EQ(answers_by_id(out), answers_by_id(ref));
  // Flags that contradict --devices.
  o = run_strata_env(testing::with_flags(a, {"--shard", "0/2"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--devices and --shard"), std::string::npos) << o.output;
  o = run_strata_env(testing::with_flags(a, {"--devices", "cpu,7"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--devices 'cpu,7'"), std::string::npos) << o.output;
}

TEST_F(ShardCli, BadShardValuesAndInputsAreRefused) {
  const std::string out = (dir_ / "out.jsonl").string();
  for (const char* bad : {"3/3", "1", "x/2", "0/0"}) {
    auto o = run_strata_env(job(out, {"--shard", bad}), log_);
    EXPECT_EQ(o.code, 2) << bad << o.output;
    EXPECT_NE(o.output.find("--shard '" + std::string(bad) + "'"), std::string::npos) << o.output;
  }
  // A resume with another shard than the one that wrote the file.
  auto o = run_strata_env(job(out, {"--shard", "0/2", "--quiet"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  fs::copy_file(out + ".shard-0-of-2", out + ".shard-1-of-2");
  fs::copy_file(out + ".shard-0-of-2.strata-job.json", out + ".shard-1-of-2.strata-job.json");
  o = run_strata_env(job(out, {"--shard", "1/2", "--resume"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("the output answers shard 0/2 of the input, this run shard 1/2"), std::string::npos) << o.output;
  // A line without a custom_id.
  { std::ofstream(in_, std::ios::app) << R"({"prompt": "no id"})" << "\n"; }
  o = run_strata_env(job((dir_ / "o2.jsonl").string(), {"--shard", "0/2"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find(in_ + ":31: this line has no custom_id"), std::string::npos) << o.output;
}

}  // namespace
}  // namespace strata
