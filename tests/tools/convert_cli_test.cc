// strata convert writes a model directory every command accepts: info describes the store, and
// chat requests render with the model's own chat template there as from the Hugging Face files.
// strata complete --prompt prints text: the prompt and the continuation generate gives.
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

TEST(ConvertCli, TheStoreIsAModelDirectoryForInfoAndChat) {
  const fs::path dir = testing::make_temp_dir("strata-convert");
  const fs::path model = testing::test_data_dir() / ".." / ".." / "models" / "demo";
  ASSERT_TRUE(fs::exists(model / "chat_template.jinja")) << "the demo model's own template";
  const std::string store = (dir / "store").string(), log = (dir / "log").string();
  auto converted = testing::run_strata_env({"convert", "--model", model.string(), "--out", store}, log);
  ASSERT_EQ(converted.code, 0) << converted.output;
  EXPECT_EQ(testing::file_text((fs::path(store) / "chat_template.jinja").string()),
            testing::file_text((model / "chat_template.jinja").string()));

  auto info = testing::run_strata_env({"info", "--model", store}, log);
  ASSERT_EQ(info.code, 0) << info.output;
  EXPECT_NE(info.output.find("a strata weight store, complete and consistent"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("layers         6"), std::string::npos) << info.output;

  // The same chat, greedy, from the Hugging Face directory and from the store.
  const std::string in = (dir / "chat.jsonl").string();
  std::ofstream(in) << nlohmann::json{{"custom_id", "c"},
                                      {"messages", {{{"role", "user"}, {"content", "Who begat Enos?"}}}},
                                      {"max_tokens", 6},
                                      {"temperature", 0}}
                           .dump()
                    << "\n";
  std::string answers[2];
  int i = 0;
  for (const std::string& m : {model.string(), store}) {
    const std::string out = (dir / ("out" + std::to_string(i) + ".jsonl")).string();
    auto run = testing::run_strata_env({"generate", "--model", m, "--input", in, "--output", out, "--quiet"}, log);
    ASSERT_EQ(run.code, 0) << run.output;
    const auto records = testing::result_records(out);
    ASSERT_EQ(records.size(), 1u);
    ASSERT_TRUE(records[0]["error"].is_null()) << records[0].dump();
    answers[i++] = records[0]["response"]["body"].dump();
  }
  const auto a = nlohmann::json::parse(answers[0]), b = nlohmann::json::parse(answers[1]);
  EXPECT_EQ(a["choices"], b["choices"]);
  EXPECT_EQ(a["usage"], b["usage"]);
  EXPECT_GT(a["usage"]["prompt_tokens"].get<int>(), 8) << "the template's markers are in the prompt";
}

TEST(ConvertCli, AMixtureOfExpertsWithFusedExpertsConvertsAndIsDescribed) {
  const fs::path dir = testing::make_temp_dir("strata-convert-moe");
  const fs::path model = testing::test_data_dir() / "fixtures" / "mixtral_window_fused";
  const std::string log = (dir / "log").string();
  for (const char* compress : {"none", "int4-g64"}) {
    const std::string store = (dir / compress).string();
    auto converted = testing::run_strata_env({"convert", "--model", model.string(), "--out", store,
                                              "--compress", compress}, log);
    ASSERT_EQ(converted.code, 0) << converted.output;
    auto info = testing::run_strata_env({"info", "--model", store}, log);
    ASSERT_EQ(info.code, 0) << info.output;
    EXPECT_NE(info.output.find("complete and consistent"), std::string::npos) << info.output;
    EXPECT_NE(info.output.find("experts        4 per sparse layer, 2 per token (ffn 64, weights renormalised); "
                               "2 of 2 layers sparse"),
              std::string::npos)
        << info.output;
  }
}

TEST(CompleteCli, APromptAsTextIsPrintedWithItsGreedyContinuation) {
  const fs::path dir = testing::make_temp_dir("strata-complete");
  const std::string model = (testing::test_data_dir() / ".." / ".." / "models" / "demo").string();
  const std::string prompt = "And the LORD said unto Moses,";
  const std::string in = (dir / "in.jsonl").string(), out = (dir / "out.jsonl").string();
  std::ofstream(in) << nlohmann::json{{"custom_id", "p"}, {"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}}.dump()
                    << "\n";
  auto gen = testing::run_strata_env({"generate", "--model", model, "--input", in, "--output", out, "--quiet"},
                                     (dir / "log").string());
  ASSERT_EQ(gen.code, 0) << gen.output;
  const auto records = testing::result_records(out);
  ASSERT_EQ(records.size(), 1u);
  const std::string text = records[0]["response"]["body"]["choices"][0]["text"];
  ASSERT_FALSE(text.empty());

  auto c = testing::run_strata_streams({"complete", "--model", model, "--prompt", prompt, "--max-tokens", "10"},
                                       (dir / "out").string(), (dir / "err").string());
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(c.out, prompt + text + "\n");

  auto both = testing::run_strata_streams({"complete", "--model", model, "--prompt", "a", "--tokens", "1 2"},
                                          (dir / "out").string(), (dir / "err").string());
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("--prompt"), std::string::npos) << both.err;
}

}  // namespace
}  // namespace strata
