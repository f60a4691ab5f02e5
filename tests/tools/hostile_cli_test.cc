// The strata binary given hostile files and flags: each case ends with a clear error naming the
// file, field or flag and a non-zero exit code (never a signal, a hang or an allocation sized by
// a bogus number), or, for NaN weights, an error line per request instead of an empty answer.
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

using nlohmann::json;
using testing::file_text;
using testing::result_records;
namespace fs = std::filesystem;

const fs::path kModel = testing::test_data_dir() / "fixtures" / "llama_text";

class HostileCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-hostile");
    log_ = (dir_ / "log.txt").string();
    model_ = dir_ / "model";
    fs::copy(kModel, model_);
    in_ = (dir_ / "in.jsonl").string();
    std::ofstream(in_) << R"({"custom_id": "a", "prompt": "Once upon a time", "max_tokens": 4})" << "\n"
                       << R"({"custom_id": "b", "prompt": "The quick brown fox", "max_tokens": 4})" << "\n";
    out_ = (dir_ / "out.jsonl").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs strata with a deadline: a hang is a failure, not a stuck test.
  testing::CliOutcome run(const std::vector<std::string>& args, int seconds = 60) {
    std::ofstream(log_, std::ios::trunc).close();
    const pid_t pid = testing::spawn_strata(args, log_);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    int status = 0;
    testing::CliOutcome o;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        o.output = "HUNG: " + file_text(log_);
        o.code = -2;
        return o;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    o.output = file_text(log_);
    return o;
  }
  std::vector<std::string> generate(std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"generate", "--model", model_.string(), "--input", in_, "--output", out_,
                                  "--temperature", "0", "--threads", "2", "--quiet"};
    return testing::with_flags(a, extra);
  }
  // info and generate both fail with code 2 and every fragment in the message, and create nothing.
  void expect_refused(const std::vector<std::string>& fragments) {
    for (const auto& args : {std::vector<std::string>{"info", "--model", model_.string()}, generate()}) {
      SCOPED_TRACE(args[0]);
      const auto o = run(args, 30);
      EXPECT_EQ(o.code, 2) << o.output;
      for (const auto& f : fragments) EXPECT_NE(o.output.find(f), std::string::npos) << f << " in: " << o.output;
      EXPECT_FALSE(fs::exists(out_));
    }
  }
  json config() { return json::parse(file_text((model_ / "config.json").string())); }
  void set_config(const json& j) { std::ofstream(model_ / "config.json", std::ios::trunc) << j.dump(1); }

  fs::path dir_, model_;
  std::string log_, in_, out_;
};

TEST_F(HostileCli, ANumberPastADoubleInConfigJson) {
  std::string text = file_text((model_ / "config.json").string());
  text.replace(text.find("\"rms_norm_eps\": 1e-05"), 21, "\"rms_norm_eps\": 1e400");
  std::ofstream(model_ / "config.json", std::ios::trunc) << text;
  expect_refused({"config.json", "'rms_norm_eps'", "1e400"});
}

TEST_F(HostileCli, ALayerCountTheWeightsDoNotHave) {
  json j = config();
  j["num_hidden_layers"] = 1;  // the weights hold 2
  set_config(j);
  expect_refused({"num_hidden_layers is 1", "hold 2 layers"});
  j["num_hidden_layers"] = 3000;  // cheap to describe, still not what the weights hold
  set_config(j);
  expect_refused({"num_hidden_layers is 3000", "hold 2 layers"});
  // A count no model has is refused when config.json is read, before anything is sized by it
  // (plan reads only config.json, and would plan for a billion layers).
  j["num_hidden_layers"] = 1000000000;
  set_config(j);
  const auto t0 = std::chrono::steady_clock::now();
  expect_refused({"config.json", "'num_hidden_layers'", "at most 4096"});
  const auto plan = run({"plan", "--model", model_.string(), "--prompt-len", "8", "--gen-len", "8", "--hardware",
                         "t4-flexgen"},
                        30);
  EXPECT_EQ(plan.code, 2) << plan.output;
  EXPECT_NE(plan.output.find("'num_hidden_layers'"), std::string::npos) << plan.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

TEST_F(HostileCli, AnEosTokenOutsideTheVocabulary) {
  json j = config();
  j["eos_token_id"] = json::array({1, 384});  // vocab_size 384
  set_config(j);
  expect_refused({"config.json", "'eos_token_id'", "384", "outside the vocabulary"});
}

TEST_F(HostileCli, AFifoAsTheWeightsIsRefusedNotWaitedOn) {
  fs::remove(model_ / "model.safetensors");
  ASSERT_EQ(::mkfifo((model_ / "model.safetensors").c_str(), 0644), 0);
  expect_refused({"model.safetensors", "FIFO", "not a regular file"});
}

TEST_F(HostileCli, AHugeVocabularyIdInTokenizerJson) {
  json tok = json::parse(file_text((model_ / "tokenizer.json").string()));
  auto& vocab = tok["model"]["vocab"];
  vocab[vocab.begin().key()] = 2147483647;
  std::ofstream(model_ / "tokenizer.json", std::ios::trunc) << tok.dump();
  const auto o = run(generate(), 30);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("tokenizer.json"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("2147483647"), std::string::npos) << o.output;
}

TEST_F(HostileCli, NanWeightsGiveAnErrorLinePerRequest) {
  // Overwrite the final norm's weights with NaN.
  const std::string path = (model_ / "model.safetensors").string();
  std::string bytes = file_text(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const json header = json::parse(bytes.substr(8, n));
  const auto& e = header.at("model.norm.weight");
  ASSERT_EQ(e["dtype"], "F32");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (uint64_t at = 8 + n + e["data_offsets"][0].get<uint64_t>(); at < 8 + n + e["data_offsets"][1].get<uint64_t>(); at += 4)
    std::memcpy(bytes.data() + at, &nan, 4);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  const auto o = run(generate(), 60);
  ASSERT_EQ(o.code, 0) << o.output;
  const auto records = result_records(out_);
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) {
    EXPECT_TRUE(r["response"].is_null()) << r;
    EXPECT_EQ(r["error"]["code"], "non_finite_logits") << r;
    EXPECT_EQ(r["error"]["scope"], "job") << r;
    EXPECT_NE(r["error"]["message"].get<std::string>().find("NaN"), std::string::npos) << r;
  }
}

TEST_F(HostileCli, BadFlagValuesAreRefusedBeforeAnyWork) {
  struct Case {
    std::vector<std::string> flags;
    const char* names;
  } cases[] = {
      {{"--temperature", "-1"}, "--temperature"},  {{"--temperature", "nan"}, "--temperature"},
      {{"--temperature", "1e9"}, "--temperature"}, {{"--top-p", "0"}, "--top-p"},
      {{"--top-p", "1.5"}, "--top-p"},             {{"--top-k", "-2"}, "--top-k"},
      {{"--max-tokens", "0"}, "--max-tokens"},     {{"--batch-size", "0"}, "--batch-size"},
      {{"--window", "0"}, "--window"},             {{"--cpu-mem", "garbage"}, "--cpu-mem"},
      {{"--cpu-mem", "-5"}, "--cpu-mem"},          {{"--gpu-mem", "0"}, "--gpu-mem"},
      {{"--disk-mem", "12XB"}, "--disk-mem"},      {{"--compress", "wat"}, "--compress"},
      {{"--device", "tpu"}, "--device"},           {{"--device", "cuda:x"}, "--device"},
      {{"--threads", "-1"}, "--threads"},          {{"--progress-interval", "0"}, "--progress-interval"},
      {{"--stop", ""}, "--stop"},                  {{"--max-prompt-len", "-3"}, "--max-prompt-len"},
      {{"--prompt-chunk", "-1"}, "--prompt-chunk"},
  };
  for (const auto& c : cases) {
    const auto o = run(generate(c.flags), 30);
    EXPECT_EQ(o.code, 2) << c.flags[0] << " " << c.flags[1] << ": " << o.output;
    EXPECT_NE(o.output.find(c.names), std::string::npos) << o.output;
    EXPECT_FALSE(fs::exists(out_)) << c.flags[0];
  }
}

TEST_F(HostileCli, OtherSubcommandsCheckTheSameFlags) {
  struct Case {
    std::vector<std::string> args;
    const char* names;
  } cases[] = {
      {{"complete", "--model", model_.string(), "--tokens", "1 2", "--temperature", "-1"}, "--temperature"},
      {{"complete", "--model", model_.string(), "--tokens", "1 2", "--top-p", "2"}, "--top-p"},
      {{"complete", "--model", model_.string(), "--tokens", "1 2", "--device", "tpu"}, "--device"},
      {{"plan", "--model-shape", "opt-125m", "--prompt-len", "8", "--gen-len", "8", "--hardware", "t4-flexgen",
        "--gpu-mem", "0"},
       "--gpu-mem"},
      {{"plan", "--model-shape", "opt-125m", "--prompt-len", "8", "--gen-len", "8", "--hardware", "t4-flexgen",
        "--cpu-mem", "garbage"},
       "--cpu-mem"},
      {{"bench", "--model-shape", "opt-125m", "--prompt-len", "8", "--gen-len", "8", "--compress", "wat"}, "--compress"},
      {{"bench", "--model-shape", "opt-125m", "--prompt-len", "8", "--gen-len", "8", "--cpu-mem", "-5"}, "--cpu-mem"},
  };
  for (const auto& c : cases) {
    const auto o = run(c.args, 30);
    EXPECT_EQ(o.code, 2) << c.args[0] << ": " << o.output;
    EXPECT_NE(o.output.find(c.names), std::string::npos) << o.output;
  }
}

TEST_F(HostileCli, FlagsTheCpuDoesNotUseAreNamedInAWarning) {
  const auto o = run(generate({"--device", "cpu", "--offload-dir", "/nonexistent/dir", "--cpu-mem", "4GiB",
                               "--compress", "int4"}),
                     60);
  ASSERT_EQ(o.code, 0) << o.output;
  for (const char* flag : {"--offload-dir", "--cpu-mem", "--compress"})
    EXPECT_NE(o.output.find(std::string(flag) + " is ignored on the CPU"), std::string::npos) << o.output;
  EXPECT_EQ(result_records(out_).size(), 2u);
}

}  // namespace
}  // namespace strata
