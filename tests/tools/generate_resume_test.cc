// `strata generate --resume` against the job that wrote the output: a reordered input is answered
// exactly once, a different input or different settings are refused (unless --resume-anyway), an
// output that is not strata's is left alone, error lines caused by a job setting are retried, and
// SIGINT stops at a record boundary with exit code 130. The real binary on the llama_text fixture.
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
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
using testing::file_text;
using testing::result_records;
using testing::run_strata_env;
namespace fs = std::filesystem;

const fs::path kModel = testing::test_data_dir() / "fixtures" / "llama_text";
const char* kWords[] = {"Once upon a time", "The quick brown fox", "Le café est", "Prices rose",
                        "A little robot",   "東京は日本の",        "Data labelling", "In 1969, humans"};

// n requests; with `own_max_tokens` every third one sets max_tokens itself.
std::vector<std::string> requests(int n, bool own_max_tokens = true, const std::string& prefix = "q") {
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    json r = {{"custom_id", prefix + std::to_string(i)}, {"prompt", kWords[i % 8]}};
    if (own_max_tokens && i % 3 == 0) r["max_tokens"] = 5 + i % 4;
    lines.push_back(r.dump());
  }
  return lines;
}

std::string write_input(const fs::path& path, const std::vector<std::string>& lines) {
  std::ofstream f(path);
  for (const auto& l : lines) f << l << "\n";
  return path.string();
}

std::vector<std::string> job(const std::string& in, const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"generate", "--model", kModel.string(), "--input", in, "--output", out,
                                "--max-tokens", "12", "--temperature", "0", "--batch-size", "2", "--window", "4",
                                "--threads", "2"};
  return testing::with_flags(a, extra);
}

// Every custom_id of `want` answered exactly once in `out`, with the same text.
void expect_exactly_once(const std::string& out, const std::multimap<std::string, std::string>& want) {
  const auto got = answers_by_id(out);
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [id, text] : want) {
    EXPECT_EQ(got.count(id), 1u) << id;
    auto it = got.find(id);
    if (it != got.end()) {
      EXPECT_EQ(it->second, text) << id;
    }
  }
}

class GenerateResume : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-resume");
    log_ = (dir_ / "log.txt").string();
    in_ = write_input(dir_ / "in.jsonl", requests(12));
    ref_ = (dir_ / "ref.jsonl").string();
    auto o = run_strata_env(job(in_, ref_, {"--quiet"}), log_);
    ASSERT_EQ(o.code, 0) << o.output;
    want_ = answers_by_id(ref_);
    ASSERT_EQ(want_.size(), 12u);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An output killed (SIGKILL) after `records` records.
  std::string interrupted(const std::string& name, int records) {
    const std::string out = (dir_ / name).string();
    auto o = run_strata_env(job(in_, out, {"--quiet"}), log_, {"STRATA_CRASH_AT=record_written:" + std::to_string(records)});
    EXPECT_EQ(o.code, 128 + SIGKILL) << o.output;
    EXPECT_EQ(result_records(out).size(), static_cast<size_t>(records));
    return out;
  }

  fs::path dir_;
  std::string log_, in_, ref_;
  std::multimap<std::string, std::string> want_;
};

TEST_F(GenerateResume, AReversedInputIsAnsweredExactlyOnce) {
  for (const char* ext : {".jsonl", ".jsonl.zst"}) {
    SCOPED_TRACE(ext);
    const std::string out = interrupted(std::string("out") + ext, 3);
    ASSERT_TRUE(fs::exists(out + ".strata-job.json"));
    auto lines = requests(12);
    std::reverse(lines.begin(), lines.end());
    const std::string rev = write_input(dir_ / "reversed.jsonl", lines);
    auto o = run_strata_env(job(rev, out, {"--resume"}), log_);
    ASSERT_EQ(o.code, 0) << o.output;
    expect_exactly_once(out, want_);
  }
}

TEST_F(GenerateResume, ADifferentInputIsRefusedAndTheOutputLeftAlone) {
  const std::string out = interrupted("out.jsonl", 3);
  const std::string before = file_text(out);
  const std::string other = write_input(dir_ / "other.jsonl", requests(3, true, "z"));
  auto o = run_strata_env(job(other, out, {"--resume"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("the input held 12 requests, now 3"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("--resume-anyway"), std::string::npos) << o.output;
  EXPECT_EQ(file_text(out), before);
  // Same count, other ids: the message says how many answered ids the input lacks.
  const std::string renamed = write_input(dir_ / "renamed.jsonl", requests(12, true, "z"));
  o = run_strata_env(job(renamed, out, {"--resume"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("custom_ids differ"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("3 custom_ids answered in the output are not in it"), std::string::npos) << o.output;
  // Same ids, another prompt.
  auto edited = requests(12);
  edited[7] = json({{"custom_id", "q7"}, {"prompt", "something else"}}).dump();
  o = run_strata_env(job(write_input(dir_ / "edited.jsonl", edited), out, {"--resume"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("contents differ"), std::string::npos) << o.output;
  EXPECT_EQ(file_text(out), before);
}

TEST_F(GenerateResume, ChangedSettingsAreRefusedUnlessResumeAnyway) {
  const std::string out = interrupted("out.jsonl", 3);
  const std::string before = file_text(out);
  auto o = run_strata_env(job(in_, out, {"--resume", "--temperature", "0.5", "--stop", "xyz"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--temperature was 0, now 0.5"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("--stop was [], now [\"xyz\"]"), std::string::npos) << o.output;
  EXPECT_EQ(file_text(out), before);
  o = run_strata_env(job(in_, out, {"--resume", "--max-tokens", "7"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--max-tokens was 12, now 7"), std::string::npos) << o.output;
  // --resume-anyway needs --resume.
  o = run_strata_env(job(in_, out, {"--resume-anyway"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--resume-anyway needs --resume"), std::string::npos) << o.output;
  // With --resume-anyway the job goes on; every request is still answered exactly once.
  o = run_strata_env(job(in_, out, {"--resume", "--resume-anyway", "--seed", "7"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("--seed was 0, now 7"), std::string::npos) << o.output;
  expect_exactly_once(out, want_);  // greedy: the seed does not change the texts
}

TEST_F(GenerateResume, AnOutputThatIsNotStratasIsRefused) {
  struct Case {
    const char* name;
    std::string bytes;
  } cases[] = {{"notes.jsonl", "hello\nworld"},
               {"other.jsonl", "{\"a\": 1}\n"},
               {"text.jsonl.zst", "plain text, not zstd\n"},
               {"one-line.jsonl", "a file without a line break"}};
  for (const auto& c : cases) {
    const std::string out = (dir_ / c.name).string();
    std::ofstream(out, std::ios::binary) << c.bytes;
    auto o = run_strata_env(job(in_, out, {"--resume"}), log_);
    EXPECT_EQ(o.code, 2) << c.name << ": " << o.output;
    EXPECT_NE(o.output.find("not an output of strata generate"), std::string::npos) << o.output;
    EXPECT_EQ(file_text(out), c.bytes) << c.name;
    EXPECT_FALSE(fs::exists(out + ".strata-job.json")) << c.name;
  }
}

TEST_F(GenerateResume, ErrorsCausedByAJobSettingAreRetried) {
  // --max-tokens 600 is past the model's context of 512: every request that does not set its own
  // max_tokens fails because of the flag, not because of itself.
  const std::string in = write_input(dir_ / "no-own.jsonl", requests(6, /*own_max_tokens=*/false));
  const std::string out = (dir_ / "out.jsonl").string();
  auto o = run_strata_env(job(in, out, {"--max-tokens", "600"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("6 requests failed because of a job setting"), std::string::npos) << o.output;
  for (const auto& r : result_records(out)) {
    EXPECT_EQ(r["error"]["code"], "context_length_exceeded") << r;
    EXPECT_EQ(r["error"]["scope"], "job") << r;
  }
  // The corrected run retries them all (the output held no answers, so the new setting is fine).
  o = run_strata_env(job(in, out, {"--resume"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  const auto got = answers_by_id(out);
  EXPECT_EQ(got.size(), 6u);
  for (const auto& [id, text] : got) EXPECT_EQ(text.rfind("error:", 0), std::string::npos) << id << " " << text;

  // Mixed: answers made with --max-tokens 600 exist, so a changed flag needs --resume-anyway.
  const std::string mixed = (dir_ / "mixed.jsonl").string();
  ASSERT_EQ(run_strata_env(job(in_, mixed, {"--max-tokens", "600"}), log_).code, 0);
  o = run_strata_env(job(in_, mixed, {"--resume"}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--max-tokens was 600, now 12"), std::string::npos) << o.output;
  o = run_strata_env(job(in_, mixed, {"--resume", "--resume-anyway"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  expect_exactly_once(mixed, want_);
}

TEST_F(GenerateResume, SigintStopsAtARecordBoundaryAndResumeFinishes) {
  // Long enough (300 requests of 100 tokens each, one at a time) that the signal comes mid-job.
  const int n = 300;
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) lines.push_back(json({{"custom_id", "s" + std::to_string(i)}, {"prompt", kWords[i % 8]}}).dump());
  const std::string in = write_input(dir_ / "long.jsonl", lines), out = (dir_ / "out.jsonl").string();
  const auto args = job(in, out, {"--batch-size", "1", "--window", "1", "--max-tokens", "100", "--ignore-eos"});
  std::ofstream(log_, std::ios::trunc).close();
  const pid_t pid = testing::spawn_strata(args, log_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (result_records(out).size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(pid, SIGINT);
  const int code = testing::wait_exit(pid);
  const std::string log = file_text(log_);
  EXPECT_EQ(code, 130) << log;
  EXPECT_NE(log.find("stopped by SIGINT"), std::string::npos) << log;
  EXPECT_NE(log.find("--resume"), std::string::npos) << log;
  const size_t written = result_records(out).size();
  EXPECT_GE(written, 3u);
  EXPECT_LT(written, static_cast<size_t>(n));
  const std::string bytes = file_text(out);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.back(), '\n') << "a record was left half written";

  auto resumed = args;
  resumed.push_back("--resume");
  auto o = run_strata_env(resumed, log_);
  ASSERT_EQ(o.code, 0) << o.output;
  std::map<std::string, int> seen;
  for (const auto& r : result_records(out)) ++seen[r["custom_id"].get<std::string>()];
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

TEST_F(GenerateResume, TornWritesAndCrashesInTheSummaryResumeCleanly) {
  for (const char* point : {"torn_write:4", "summary:1", "atomic_write:1", "record_written:1"}) {
    SCOPED_TRACE(point);
    const std::string out = (dir_ / ("out-" + std::string(point).substr(0, 5) + ".jsonl.zst")).string();
    fs::remove(out);
    auto o = run_strata_env(job(in_, out, {"--quiet"}), log_, {"STRATA_CRASH_AT=" + std::string(point)});
    EXPECT_EQ(o.code, 128 + SIGKILL) << o.output;
    o = run_strata_env(job(in_, out, {"--quiet", "--resume"}), log_);
    ASSERT_EQ(o.code, 0) << o.output;
    expect_exactly_once(out, want_);
  }
}

}  // namespace
}  // namespace strata
