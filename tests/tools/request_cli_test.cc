// `strata generate` and the fields of requests, as users run it on the llama_text fixture: a
// misspelled or unknown field is an error line naming it (or, with --ignore-unknown-fields, one
// warning per field and the normal answer); results name the served model; --output - writes the
// results to standard output.
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kModel = testing::test_data_dir() / "fixtures" / "llama_text";

class RequestCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-requests");
    log_ = (dir_ / "log.txt").string();
    in_ = (dir_ / "in.jsonl").string();
    out_ = (dir_ / "out.jsonl").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_input(const std::vector<std::string>& lines) {
    std::ofstream f(in_);
    for (const auto& l : lines) f << l << "\n";
  }
  std::vector<std::string> args(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = {"generate",
                                  "--model",
                                  kModel.string(),
                                  "--input",
                                  in_,
                                  "--output",
                                  out_,
                                  "--max-tokens",
                                  "6",
                                  "--temperature",
                                  "0",
                                  "--threads",
                                  "2",
                                  "--overwrite"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // The records of the output by custom_id.
  std::map<std::string, json> by_id() const {
    std::map<std::string, json> m;
    for (const json& r : testing::result_records(out_)) m[r["custom_id"].get<std::string>()] = r;
    return m;
  }

  fs::path dir_;
  std::string log_, in_, out_;
};

std::string text_of(const json& record) {
  return record["response"]["body"]["choices"][0]["text"].get<std::string>();
}

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
  return n;
}

TEST_F(RequestCli, UnknownFieldsAreErrorLinesOrWithTheFlagWarningsAndNormalAnswers) {
  write_input(
      {R"({"custom_id": "typo", "prompt": "Once upon a time", "temprature": 0.9})",
       R"({"custom_id": "alien", "prompt": "Once upon a time", "flux_capacitor": 1.21})",
       R"({"custom_id": "typo2", "prompt": "The quick brown fox", "temprature": 0.9})",
       R"({"custom_id": "penalty", "prompt": "Once upon a time", "length_penalty": 0.5})",
       R"({"custom_id": "plain", "prompt": "Once upon a time"})"});
  // Without the flag: an error line per request, each naming its field.
  testing::CliOutcome o = testing::run_strata_env(args({"--quiet"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  auto r = by_id();
  ASSERT_EQ(r.size(), 5u);
  for (const char* id : {"typo", "typo2"}) {
    ASSERT_TRUE(r[id]["error"].is_object()) << r[id];
    EXPECT_EQ(r[id]["error"]["code"], "unknown_field");
    const std::string msg = r[id]["error"]["message"].get<std::string>();
    EXPECT_NE(msg.find("unknown field 'temprature' (did you mean 'temperature'?)"),
              std::string::npos)
        << msg;
    EXPECT_EQ(r[id]["error"]["scope"], "request");
  }
  EXPECT_EQ(r["alien"]["error"]["code"], "unknown_field");
  EXPECT_NE(
      r["alien"]["error"]["message"].get<std::string>().find("unknown field 'flux_capacitor'"),
      std::string::npos);
  EXPECT_EQ(r["alien"]["error"]["message"].get<std::string>().find("did you mean"),
            std::string::npos);
  EXPECT_EQ(r["penalty"]["error"]["code"], "unsupported");
  EXPECT_NE(r["penalty"]["error"]["message"].get<std::string>().find("'length_penalty'"),
            std::string::npos);
  ASSERT_TRUE(r["plain"]["response"].is_object()) << r["plain"];

  // With the flag: every request answered as if the field were absent (the job's temperature 0,
  // so the same text as the plain request), one warning per distinct field.
  o = testing::run_strata_env(args({"--ignore-unknown-fields"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  r = by_id();
  ASSERT_EQ(r.size(), 5u);
  for (const auto& [id, rec] : r) ASSERT_TRUE(rec["response"].is_object()) << id << ": " << rec;
  EXPECT_EQ(text_of(r["typo"]), text_of(r["plain"]));
  EXPECT_EQ(text_of(r["alien"]), text_of(r["plain"]));
  EXPECT_EQ(text_of(r["penalty"]), text_of(r["plain"]));
  EXPECT_EQ(count(o.output, "ignored (--ignore-unknown-fields)"), 3u) << o.output;
  EXPECT_EQ(count(o.output, "'temprature' (did you mean 'temperature'?): ignored"), 1u) << o.output;
  EXPECT_EQ(count(o.output, "unknown field 'flux_capacitor': ignored"), 1u) << o.output;
  EXPECT_EQ(
      count(o.output, "'length_penalty' is not supported (leave it out or set 1): ignored"), 1u)
      << o.output;
}

TEST_F(RequestCli, ResultsNameTheServedModel) {
  write_input(
      {R"({"custom_id": "asks", "method": "POST", "url": "/v1/completions", )"
       R"("body": {"model": "gpt-4o-mini", "prompt": "Once upon a time"}})",
       R"({"custom_id": "chat", "model": "some-other-model", "messages": [{"role": "user", "content": "Hi"}]})",
       R"({"custom_id": "none", "prompt": "Once upon a time"})"});
  auto models = [&] {
    std::map<std::string, std::string> m;
    for (const auto& [id, rec] : by_id()) {
      EXPECT_TRUE(rec["response"].is_object()) << id << ": " << rec;
      if (rec["response"].is_object()) m[id] = rec["response"]["body"]["model"].get<std::string>();
    }
    return m;
  };
  testing::CliOutcome o = testing::run_strata_env(args({"--quiet"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  const std::map<std::string, std::string> dir_name = {
      {"asks", "llama_text"}, {"chat", "llama_text"}, {"none", "llama_text"}};
  EXPECT_EQ(models(), dir_name);
  o = testing::run_strata_env(args({"--quiet", "--served-model-name", "acme/story-1"}), log_);
  ASSERT_EQ(o.code, 0) << o.output;
  const std::map<std::string, std::string> served = {
      {"asks", "acme/story-1"}, {"chat", "acme/story-1"}, {"none", "acme/story-1"}};
  EXPECT_EQ(models(), served);
  o = testing::run_strata_env(args({"--quiet", "--served-model-name", ""}), log_);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("--served-model-name must not be empty"), std::string::npos) << o.output;
}

TEST_F(RequestCli, OutputDashWritesResultLinesToStandardOutput) {
  write_input({R"({"custom_id": "a", "prompt": "Once upon a time"})",
               R"({"custom_id": "b", "prompt": "The quick brown fox", "temprature": 0})",
               R"({"custom_id": "c", "prompt": "Le café est"})"});
  const std::string out = (dir_ / "stdout.txt").string(), err = (dir_ / "stderr.txt").string();
  std::vector<std::string> a = args({"--progress-interval", "0.01"});
  a[6] = "-";  // --output -
  ASSERT_EQ(a[5], "--output");
  const testing::CliStreams s = testing::run_strata_streams(a, out, err, dir_.string());
  ASSERT_EQ(s.code, 0) << s.err;
  std::istringstream lines(s.out);
  std::string line;
  std::map<std::string, json> got;
  while (std::getline(lines, line)) {
    const json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON on stdout: " << line;
    ASSERT_TRUE(j.contains("custom_id") && j.contains("response") && j.contains("error")) << line;
    got[j["custom_id"].get<std::string>()] = j;
  }
  ASSERT_EQ(got.size(), 3u) << s.out;
  EXPECT_TRUE(got["a"]["response"].is_object());
  EXPECT_EQ(got["b"]["error"]["code"], "unknown_field");
  EXPECT_TRUE(got["c"]["response"].is_object());
  EXPECT_EQ(s.out.back(), '\n');
  // The summary goes to stderr; no output file nor job file was made.
  EXPECT_NE(s.err.find("requests: 2 ok, 1 failed"), std::string::npos) << s.err;
  EXPECT_EQ(s.err.find("\"custom_id\""), std::string::npos) << s.err;
  EXPECT_FALSE(fs::exists(out_));
  EXPECT_FALSE(fs::exists(dir_ / "-"));
  EXPECT_FALSE(fs::exists(dir_ / "-.strata-job.json"));

  // --resume has nothing to continue on standard output.
  a.push_back("--resume");
  a.erase(std::find(a.begin(), a.end(), "--overwrite"));
  const testing::CliStreams resumed = testing::run_strata_streams(a, out, err, dir_.string());
  EXPECT_EQ(resumed.code, 2);
  EXPECT_NE(resumed.err.find("--resume cannot continue --output -"), std::string::npos)
      << resumed.err;
  EXPECT_EQ(resumed.out, "");
}

}  // namespace
}  // namespace strata
