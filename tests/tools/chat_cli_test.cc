// strata chat: each input line a user message, answered through the model's own chat template with
// the conversation so far; the answers are generate's for the same messages.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kDemo = testing::test_data_dir() / ".." / ".." / "models" / "demo";

// generate's greedy answer to `messages` with max_tokens 8.
std::string generate_answer(const fs::path& dir, const json& messages) {
  const std::string in = (dir / "chat.jsonl").string(), out = (dir / "out.jsonl").string();
  std::ofstream(in, std::ios::trunc) << json{{"custom_id", "c"}, {"messages", messages}, {"max_tokens", 8}, {"temperature", 0}}.dump()
                                     << "\n";
  auto run = testing::run_strata_env({"generate", "--model", kDemo.string(), "--input", in, "--output", out,
                                      "--overwrite", "--quiet"},
                                     (dir / "gen.log").string());
  EXPECT_EQ(run.code, 0) << run.output;
  const auto records = testing::result_records(out);
  EXPECT_EQ(records.size(), 1u);
  return records.empty() ? "" : records[0]["response"]["body"]["choices"][0]["message"]["content"].get<std::string>();
}

TEST(ChatCli, AnswersAreGeneratesForTheConversationSoFar) {
  const fs::path dir = testing::make_temp_dir("strata-chat");
  const std::string in = (dir / "in.txt").string();
  std::ofstream(in) << "Who begat Enos?\n\nAnd then?\n/reset\nWho begat Enos?\n/exit\nnot read\n";
  auto chat = testing::run_strata_streams({"chat", "--model", kDemo.string(), "--temperature", "0", "--max-tokens", "8"},
                                          (dir / "out.txt").string(), (dir / "err.txt").string(), "", in);
  ASSERT_EQ(chat.code, 0) << chat.err;
  std::vector<std::string> answers;
  std::istringstream lines(chat.out);
  for (std::string l; std::getline(lines, l);) answers.push_back(l);
  ASSERT_EQ(answers.size(), 3u) << chat.out;

  const json first = json::array({{{"role", "user"}, {"content", "Who begat Enos?"}}});
  const std::string a1 = generate_answer(dir, first);
  EXPECT_EQ(answers[0], a1);
  json second = first;
  second.push_back({{"role", "assistant"}, {"content", a1}});
  second.push_back({{"role", "user"}, {"content", "And then?"}});
  EXPECT_EQ(answers[1], generate_answer(dir, second));
  EXPECT_EQ(answers[2], a1) << "/reset starts the conversation over";
}

TEST(ChatCli, AMessageTooLongForTheContextIsReportedAndTheChatGoesOn) {
  const fs::path dir = testing::make_temp_dir("strata-chat");
  const std::string in = (dir / "in.txt").string();
  std::string longer;
  for (int i = 0; i < 400; ++i) longer += "and Seth begat Enos ";
  std::ofstream(in) << longer << "\nWho begat Enos?\n";
  auto chat = testing::run_strata_streams({"chat", "--model", kDemo.string(), "--temperature", "0", "--max-tokens", "8"},
                                          (dir / "out.txt").string(), (dir / "err.txt").string(), "", in);
  ASSERT_EQ(chat.code, 0) << chat.err;
  EXPECT_NE(chat.err.find("do not fit the model's context"), std::string::npos) << chat.err;
  EXPECT_EQ(chat.out, generate_answer(dir, json::array({{{"role", "user"}, {"content", "Who begat Enos?"}}})) + "\n");
}

TEST(ChatCli, BadFlagsAreRefusedBeforeTheModelLoads) {
  const fs::path dir = testing::make_temp_dir("strata-chat");
  auto chat = testing::run_strata_env({"chat", "--model", kDemo.string(), "--temperature", "-1"}, (dir / "log").string());
  EXPECT_NE(chat.code, 0);
  EXPECT_NE(chat.output.find("--temperature"), std::string::npos) << chat.output;
}

}  // namespace
}  // namespace strata
