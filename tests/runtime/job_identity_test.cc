// The identity of a generate job: an input fingerprint that ignores the order of requests but not
// their ids or contents, settings differences named by flag, and the job file's round trip.
#include "runtime/job_identity.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "testing/test_data.h"

namespace strata::runtime {
namespace {

namespace fs = std::filesystem;

std::string write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p.string();
}

TEST(JobIdentity, InputFingerprintIgnoresOrderButNotIdsOrContents) {
  const auto dir = testing::make_temp_dir("strata-identity");
  const std::string a = "{\"custom_id\": \"a\", \"prompt\": \"x\"}\n", b = "{\"custom_id\": \"b\", \"prompt\": \"y\"}\n";
  auto f1 = fingerprint_input(write(dir / "1.jsonl", a + b + "\n"));
  auto f2 = fingerprint_input(write(dir / "2.jsonl", b + a));
  auto f3 = fingerprint_input(write(dir / "3.jsonl", a + "{\"custom_id\": \"c\", \"prompt\": \"y\"}\n"));
  auto f4 = fingerprint_input(write(dir / "4.jsonl", a + "{\"custom_id\": \"b\", \"prompt\": \"z\"}\n"));
  ASSERT_TRUE(f1.is_ok() && f2.is_ok() && f3.is_ok() && f4.is_ok());
  EXPECT_EQ(f1->requests, 2);  // the blank line is not a request
  EXPECT_EQ(f1->ids, f2->ids);
  EXPECT_EQ(f1->contents, f2->contents);
  EXPECT_NE(f1->ids, f3->ids);
  EXPECT_EQ(f1->ids, f4->ids);
  EXPECT_NE(f1->contents, f4->contents);
  // A line without a readable custom_id counts by its position.
  auto g1 = fingerprint_input(write(dir / "5.jsonl", a + "{broken\n" + b));
  auto g2 = fingerprint_input(write(dir / "6.jsonl", "{broken\n" + a + b));
  ASSERT_TRUE(g1.is_ok() && g2.is_ok());
  EXPECT_EQ(g1->ids, g2->ids);
  EXPECT_NE(g1->contents, g2->contents);
  EXPECT_TRUE(fingerprint_input("-")->from_stdin);
}

TEST(JobIdentity, DifferencesNameTheFlagAndTheValues) {
  JobIdentity was, now;
  was.input = {"in.jsonl", false, 12, 1, 2};
  now.input = {"in.jsonl", false, 3, 5, 6};
  was.answers = {{"temperature", 0.0}, {"max_tokens", 256}, {"stop", nlohmann::json::array()},
                 {"model_files_xxh64", "aaaa"}};
  now.answers = {{"temperature", 0.7}, {"max_tokens", 256}, {"stop", {"\n"}}, {"model_files_xxh64", "bbbb"}};
  auto input = input_differences(was, now, 7);
  ASSERT_EQ(input.size(), 1u);
  EXPECT_EQ(input[0], "the input held 12 requests, now 3 (7 custom_ids answered in the output are not in it)");
  auto settings = settings_differences(was, now);
  ASSERT_EQ(settings.size(), 3u);
  EXPECT_NE(std::find(settings.begin(), settings.end(), "--temperature was 0, now 0.7"), settings.end());
  EXPECT_NE(std::find(settings.begin(), settings.end(), "--stop was [], now [\"\\n\"]"), settings.end());
  EXPECT_NE(std::find(settings.begin(), settings.end(), "the model's files changed"), settings.end());
  EXPECT_TRUE(settings_differences(was, was).empty());
  EXPECT_TRUE(input_differences(was, was, 0).empty());
  // --ignore-unknown-fields answers requests that were error lines: a job of either kind does
  // not resume the other's output.
  JobIdentity ignoring = was;
  ignoring.answers["ignore_unknown_fields"] = true;
  EXPECT_EQ(settings_differences(was, ignoring), std::vector<std::string>{"--ignore-unknown-fields was false, now true"});
  now.input.from_stdin = true;
  EXPECT_TRUE(input_differences(was, now, 0).empty());
}

TEST(JobIdentity, JobFileRoundTripAndDamage) {
  const auto dir = testing::make_temp_dir("strata-identity");
  const std::string out = (dir / "out.jsonl").string();
  auto none = read_job_file(out);
  ASSERT_TRUE(none.is_ok());
  EXPECT_FALSE(none->has_value());
  JobIdentity id;
  id.input = {"in.jsonl", false, 4, 0xfedcba9876543210ull, 42};
  id.answers = {{"temperature", 0.7f}, {"seed", uint64_t{18446744073709551615u}}};
  ASSERT_TRUE(write_job_file(out, id).is_ok());
  auto back = read_job_file(out);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ((*back)->input.ids, id.input.ids);
  EXPECT_EQ((*back)->input.requests, 4);
  EXPECT_TRUE(settings_differences(**back, id).empty()) << (*back)->answers.dump();
  for (const char* bad : {"{}", "not json", R"({"format": "strata-generate-job", "version": 99,
                                                 "input": {}, "answers": {}})",
                          R"({"format": "strata-generate-job", "version": 1, "input": {"requests": 1e400}})"}) {
    std::ofstream(job_file_path(out), std::ios::trunc) << bad;
    auto r = read_job_file(out);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find(job_file_path(out)), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace strata::runtime
