// strata merge's checks on hand-made shard files: complete shards merge in input or shard order;
// a missing id, an id answered twice (across shards or within one), an id the input lacks, an id
// in the wrong shard, a torn last record, a missing shard file and a shard of another job or with
// other settings are errors naming the id and the file, and leave no output behind.
#include "runtime/merge.h"

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/job_identity.h"
#include "runtime/shard.h"
#include "testing/test_data.h"

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kRequests = 40;
constexpr int32_t kShards = 3;

std::string record(int line, const std::string& id, const std::string& text) {
  return json{{"id", "batch_req_" + std::to_string(line)},
              {"custom_id", id},
              {"response", {{"status_code", 200}, {"body", {{"choices", {{{"index", 0}, {"text", text}}}}}}}},
              {"error", nullptr}}
      .dump();
}

class Merge : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-merge");
    input_ = (dir_ / "in.jsonl").string();
    output_ = (dir_ / "out.jsonl").string();
    std::ofstream in(input_);
    for (int i = 0; i < kRequests; ++i) in << json{{"custom_id", "r" + std::to_string(i)}, {"prompt", "p"}}.dump() << "\n";
    in.close();
    for (int32_t s = 0; s < kShards; ++s) lines_.emplace_back();
    for (int i = kRequests - 1; i >= 0; --i) {  // shard files in another order than the input
      const std::string id = "r" + std::to_string(i);
      lines_[static_cast<size_t>(shard_of(id, kShards))].push_back(record(i + 1, id, "text " + id));
    }
  }
  std::string shard_file(int32_t s) const { return shard_output_path(output_, {s, kShards}); }
  void write_shards(const json& answers = {{"temperature", 0}}) {
    for (int32_t s = 0; s < kShards; ++s) write_shard(s, answers);
  }
  void write_shard(int32_t s, const json& answers = {{"temperature", 0}}, const std::string& tail = "") {
    std::ofstream f(shard_file(s), std::ios::trunc);
    for (const auto& l : lines_[static_cast<size_t>(s)]) f << l << "\n";
    f << tail;
    f.close();
    JobIdentity id;
    id.input = *fingerprint_input(input_, {s, kShards});
    id.answers = answers;
    ASSERT_TRUE(write_job_file(shard_file(s), id).is_ok());
  }
  Result<MergeSummary> merge(bool input_order = true) {
    MergeOptions o{.input = input_, .output = output_, .shards = 0, .input_order = input_order};
    return merge_shards(o, log_);
  }
  std::string error() {
    auto r = merge();
    EXPECT_FALSE(r.is_ok());
    EXPECT_FALSE(fs::exists(output_)) << "a failed merge left an output";
    return r.is_ok() ? "" : r.status().message();
  }
  std::vector<std::string> output_ids() {
    std::vector<std::string> ids;
    std::ifstream f(output_);
    for (std::string l; std::getline(f, l);) ids.push_back(json::parse(l)["custom_id"]);
    return ids;
  }

  fs::path dir_;
  std::string input_, output_;
  std::vector<std::vector<std::string>> lines_;
  Logger log_{LogLevel::kError};
};

TEST_F(Merge, CompleteShardsMergeInInputOrder) {
  write_shards();
  auto r = merge();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->records, kRequests);
  EXPECT_EQ(r->ok, kRequests);
  std::vector<std::string> want;
  for (int i = 0; i < kRequests; ++i) want.push_back("r" + std::to_string(i));
  EXPECT_EQ(output_ids(), want);
  // The merged output carries the whole job's identity: generate --resume can continue it.
  auto id = read_job_file(output_);
  ASSERT_TRUE(id.is_ok() && id->has_value());
  EXPECT_FALSE((*id)->input.shard.sharded());
  EXPECT_EQ((*id)->input.requests, kRequests);
  EXPECT_EQ((*id)->answers["temperature"], 0);
  // An existing output is replaced only on request.
  EXPECT_FALSE(merge().is_ok());
  MergeOptions o{.input = input_, .output = output_, .shards = kShards, .overwrite = true};
  EXPECT_TRUE(merge_shards(o, log_).is_ok());
}

TEST_F(Merge, ShardOrderKeepsEachFileAsWritten) {
  write_shards();
  ASSERT_TRUE(merge(/*input_order=*/false).is_ok());
  std::vector<std::string> want;
  for (const auto& shard : lines_)
    for (const auto& l : shard) want.push_back(json::parse(l)["custom_id"]);
  EXPECT_EQ(output_ids(), want);
}

TEST_F(Merge, MissingIdIsNamedWithItsShard) {
  const std::string gone = json::parse(lines_[1].back())["custom_id"];
  lines_[1].pop_back();
  write_shards();
  const std::string e = error();
  EXPECT_NE(e.find("'" + gone + "' is not answered"), std::string::npos) << e;
  EXPECT_NE(e.find(shard_file(1)), std::string::npos) << e;
  EXPECT_NE(e.find("--shard 1/3 --resume"), std::string::npos) << e;
}

TEST_F(Merge, DuplicateWithinAShardIsNamedWithBothRecords) {
  lines_[2].push_back(lines_[2].front());
  write_shards();
  const std::string e = error();
  const std::string id = json::parse(lines_[2].front())["custom_id"];
  EXPECT_NE(e.find("'" + id + "' is answered 2 times"), std::string::npos) << e;
  EXPECT_NE(e.find(shard_file(2) + " record 1"), std::string::npos) << e;
  EXPECT_NE(e.find(shard_file(2) + " record " + std::to_string(lines_[2].size())), std::string::npos) << e;
}

TEST_F(Merge, DuplicateAcrossShardsIsAnIdInTheWrongShard) {
  lines_[0].push_back(lines_[1].front());  // shard 1's id also in shard 0's file
  write_shards();
  const std::string e = error();
  const std::string id = json::parse(lines_[1].front())["custom_id"];
  EXPECT_NE(e.find("custom_id '" + id + "' belongs to shard 1/3, not to this file's shard 0/3"), std::string::npos) << e;
  EXPECT_NE(e.find(shard_file(0)), std::string::npos) << e;
}

TEST_F(Merge, DuplicateAcrossShardsOfADifferentCountIsCaught) {
  // Shard files left from a run with another N: the same ids again, in files of another count.
  write_shards();
  for (int32_t s = 0; s < 2; ++s) {
    std::ofstream f(shard_output_path(output_, {s, 2}));
    f << record(1, "r0", "x") << "\n";
  }
  auto found = find_shard_count(output_);
  ASSERT_FALSE(found.is_ok());
  EXPECT_NE(found.status().message().find("different shard counts (2, 3)"), std::string::npos) << found.status().message();
  MergeOptions o{.input = input_, .output = output_, .shards = kShards};
  EXPECT_TRUE(merge_shards(o, log_).is_ok());  // --shards N picks the job's files
}

TEST_F(Merge, ExtraIdNotInTheInputIsNamed) {
  std::string extra = "zz";
  for (int k = 0; shard_of(extra, kShards) != 0; ++k) extra = "zz" + std::to_string(k);
  lines_[0].push_back(record(99, extra, "t"));
  write_shards();
  const std::string e = error();
  EXPECT_NE(e.find("custom_id '" + extra + "' is not a request of " + input_), std::string::npos) << e;
  EXPECT_NE(e.find(shard_file(0) + " record " + std::to_string(lines_[0].size())), std::string::npos) << e;
}

TEST_F(Merge, TornLastRecordSaysToResumeTheShard) {
  write_shards();
  write_shard(1, {{"temperature", 0}}, R"({"id":"batch_req_7","custom_id":"r6","resp)");
  const std::string e = error();
  EXPECT_NE(e.find(shard_file(1) + " ends with a torn record"), std::string::npos) << e;
  EXPECT_NE(e.find("--shard 1/3 --resume"), std::string::npos) << e;
}

TEST_F(Merge, MissingShardFileIsNamed) {
  write_shards();
  fs::remove(shard_file(2));
  MergeOptions o{.input = input_, .output = output_, .shards = kShards};
  auto r = merge_shards(o, log_);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(shard_file(2) + " does not exist"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(output_));
}

TEST_F(Merge, ShardOfAnotherJobIsRefused) {
  write_shards();
  // Shard 1 of a job whose input had other contents.
  const std::string other = (dir_ / "other.jsonl").string();
  {
    std::ofstream f(other);
    for (int i = 0; i < kRequests; ++i) f << json{{"custom_id", "r" + std::to_string(i)}, {"prompt", "q"}}.dump() << "\n";
  }
  JobIdentity id;
  id.input = *fingerprint_input(other, {1, kShards});
  id.answers = {{"temperature", 0}};
  ASSERT_TRUE(write_job_file(shard_file(1), id).is_ok());
  std::string e = error();
  EXPECT_NE(e.find(shard_file(1) + " was written for a different input"), std::string::npos) << e;
  // Other settings than the other shards'.
  write_shards();
  write_shard(2, {{"temperature", 0.7}});
  e = error();
  EXPECT_NE(e.find(shard_file(2) + " was made with other settings"), std::string::npos) << e;
  EXPECT_NE(e.find("--temperature was 0, now 0.7"), std::string::npos) << e;
  // A shard file whose job file says it is another shard.
  write_shards();
  fs::copy_file(job_file_path(shard_file(0)), job_file_path(shard_file(1)), fs::copy_options::overwrite_existing);
  e = error();
  EXPECT_NE(e.find("answers shard 0/3, not shard 1/3"), std::string::npos) << e;
}

TEST_F(Merge, RepeatedIdOfTheInputIsAnsweredAsOftenAsItAppears) {
  {
    std::ofstream in(input_, std::ios::app);
    in << json{{"custom_id", "r5"}, {"prompt", "again"}}.dump() << "\n";
  }
  const size_t s = static_cast<size_t>(shard_of("r5", kShards));
  lines_[s].push_back(json{{"id", "batch_req_41"}, {"custom_id", "r5"}, {"response", nullptr},
                           {"error", {{"code", "duplicate_custom_id"}, {"message", "m"}}}}.dump());
  write_shards();
  auto r = merge();
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->records, kRequests + 1);
  std::ifstream f(output_);
  std::vector<json> recs;
  for (std::string l; std::getline(f, l);) recs.push_back(json::parse(l));
  EXPECT_TRUE(recs[5]["response"].is_object());  // the first r5 gets the answer
  EXPECT_EQ(recs.back()["error"]["code"], "duplicate_custom_id");
}

TEST_F(Merge, NoShardFilesAtAll) {
  auto r = merge();
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("no shard files"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace strata::runtime
