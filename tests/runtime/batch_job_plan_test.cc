// What the batch job tells the planner before an offloaded run (scan_batch_job: the requests,
// the longest prompt and the largest max_tokens, as the job itself would tokenize them), and the
// per-sequence bound a policy sets (max_sequence_len: a longer request gets an error line and the
// job goes on). On the llama_text fixture, on the CPU.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/batch_job.h"
#include "runtime/context.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

using nlohmann::json;

class BatchJobPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::test_data_dir() / "fixtures" / "llama_text";
    tmp_ = testing::make_temp_dir("strata-batch-plan");
    ContextOptions o;
    o.threads = 2;
    o.log_level = LogLevel::kWarn;
    ctx_ = make_context(o).value();
    tok_ = text::Tokenizer::load_dir(dir_).value();
  }
  std::string write_input(const std::vector<json>& lines) {
    const std::string path = (tmp_ / "in.jsonl").string();
    std::ofstream f(path);
    for (const auto& l : lines) f << (l.is_string() ? l.get<std::string>() : l.dump()) << "\n";
    return path;
  }
  BatchJobOptions options(const std::string& in) {
    BatchJobOptions o;
    o.input = in;
    o.output = (tmp_ / "out.jsonl").string();
    o.temperature = 0;
    o.max_tokens = 16;
    o.progress.quiet = true;
    return o;
  }
  int64_t tokens(const std::string& prompt) const {
    return static_cast<int64_t>(tok_->encode(prompt, /*add_special_tokens=*/true).size());
  }

  std::filesystem::path dir_, tmp_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<text::Tokenizer> tok_;
};

TEST_F(BatchJobPlanTest, ScanFindsTheLongestPromptAndLargestMaxTokensOfValidRequests) {
  const std::string short_p = "Once upon a time",
                    long_p = "The quick brown fox jumps over the lazy dog, twice";
  const std::string in = write_input({
      json{{"custom_id", "a"}, {"prompt", short_p}},  // max_tokens: the default 16
      json{{"custom_id", "b"}, {"prompt", long_p}, {"max_tokens", 5}},
      json{{"custom_id", "c"}, {"prompt", short_p}, {"max_tokens", 40}},
      json{{"custom_id", "a"}, {"prompt", long_p + long_p}},  // duplicate id: an error line
      json("{broken"),                                        // not JSON: an error line
      json{{"custom_id", "d"}, {"prompt", ""}},               // empty: an error line
  });
  auto cfg = model::load_config(dir_ / "config.json");
  ASSERT_TRUE(cfg.is_ok());
  auto shape = scan_batch_job(*cfg, *tok_, options(in), ctx_->logger);
  ASSERT_TRUE(shape.is_ok()) << shape.status().to_string();
  ASSERT_GT(tokens(long_p), tokens(short_p));
  EXPECT_EQ(shape->requests, 3);
  EXPECT_EQ(shape->max_prompt_tokens, tokens(long_p));
  EXPECT_EQ(shape->max_new_tokens, 40);
  EXPECT_EQ(shape->max_sequence_len, std::max(tokens(long_p) + 5, tokens(short_p) + 40));
  // Each valid request's lengths, in input order, for a plan of the job's mix.
  const std::vector<std::pair<int64_t, int64_t>> lengths = {
      {tokens(short_p), 16}, {tokens(long_p), 5}, {tokens(short_p), 40}};
  EXPECT_EQ(shape->lengths, lengths);

  BatchJobOptions from_stdin = options("-");
  auto s = scan_batch_job(*cfg, *tok_, from_stdin, ctx_->logger);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("--max-prompt-len"), std::string::npos);
}

TEST_F(BatchJobPlanTest, RequestsBeyondThePolicysSequenceLengthGetErrorLines) {
  const std::string short_p = "Once upon a time";
  const std::string in = write_input({
      json{{"custom_id", "fits"}, {"prompt", short_p}, {"max_tokens", 4}},
      json{{"custom_id", "too_long"}, {"prompt", short_p}, {"max_tokens", 12}},
  });
  auto model = load_model_dir(*ctx_, dir_);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  BatchJobOptions o = options(in);
  o.max_sequence_len = tokens(short_p) + 4;
  auto summary = run_batch_job(**model, *tok_, o, ctx_->logger);
  ASSERT_TRUE(summary.is_ok()) << summary.status().to_string();
  EXPECT_EQ(summary->ok, 1);
  EXPECT_EQ(summary->failed, 1);
  std::ifstream out(o.output);
  std::string line;
  int errors = 0;
  while (std::getline(out, line)) {
    const json r = json::parse(line);
    if (r["custom_id"] == "too_long") {
      ++errors;
      EXPECT_EQ(r["error"]["code"], "context_length_exceeded");
      EXPECT_NE(r["error"]["message"].get<std::string>().find("policy"), std::string::npos) << line;
    } else {
      EXPECT_EQ(r["response"]["body"]["usage"]["completion_tokens"], 4) << line;
    }
  }
  EXPECT_EQ(errors, 1);
}

}  // namespace
}  // namespace strata::runtime
