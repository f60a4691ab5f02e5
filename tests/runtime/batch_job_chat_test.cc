// The chat path of the batch job on the llama_text fixture: the model's own template renders chat
// requests; --chat-template takes a Jinja file, whose raise_exception becomes the request's error
// line naming the template and its line; a family the tokenizer has no markers for warns once.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/batch_job.h"
#include "runtime/context.h"
#include "runtime/load_model.h"
#include "testing/test_data.h"
#include "text/chat_template.h"
#include "text/line_io.h"
#include "text/tokenizer.h"

namespace strata::runtime {
namespace {

using nlohmann::json;

class BatchJobChatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto dir = testing::test_data_dir() / "fixtures" / "llama_text";
    ContextOptions o;
    o.threads = 2;
    o.log_level = LogLevel::kWarn;
    ctx_ = make_context(o).value().release();
    model_ = load_model_dir(*ctx_, dir).value().release();
    tok_ = text::Tokenizer::load_dir(dir).value().release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete model_;
    delete ctx_;
  }

  // Runs `lines` with `chat_template`; returns the results by custom_id and what was logged.
  static std::map<std::string, json> run(const std::vector<json>& lines,
                                         const std::string& chat_template,
                                         std::string* log = nullptr) {
    const auto tmp = testing::make_temp_dir("strata-chat-job");
    const std::string in = (tmp / "in.jsonl").string(), out = (tmp / "out.jsonl").string();
    {
      std::ofstream f(in);
      for (const auto& l : lines) f << l.dump() << "\n";
    }
    BatchJobOptions o;
    o.input = in;
    o.output = out;
    o.temperature = 0;
    o.max_tokens = 2;
    o.model_name = "llama_text";
    o.progress.quiet = true;
    o.chat_template = chat_template;
    std::FILE* log_file = std::tmpfile();
    Logger logger(LogLevel::kWarn, log_file);
    auto sum = run_batch_job(*model_, *tok_, o, logger);
    EXPECT_TRUE(sum.is_ok()) << sum.status().to_string();
    if (log) {
      std::rewind(log_file);
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, log_file)) > 0) log->append(buf, n);
    }
    std::fclose(log_file);
    std::map<std::string, json> results;
    std::ifstream r(out);
    for (std::string line; std::getline(r, line);) {
      json j = json::parse(line);
      results[j["custom_id"].get<std::string>()] = j;
    }
    return results;
  }

  static Context* ctx_;
  static compute::Transformer* model_;
  static text::Tokenizer* tok_;
};
Context* BatchJobChatTest::ctx_ = nullptr;
compute::Transformer* BatchJobChatTest::model_ = nullptr;
text::Tokenizer* BatchJobChatTest::tok_ = nullptr;

json chat(const std::string& id, json messages) {
  return {{"custom_id", id}, {"messages", std::move(messages)}};
}

TEST_F(BatchJobChatTest, TheModelsOwnTemplateRendersChatRequests) {
  const json messages = json::array(
      {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}});
  auto results = run({chat("a", messages)}, "");
  ASSERT_EQ(results.count("a"), 1u);
  const auto& body = results["a"]["response"]["body"];
  std::vector<std::string> warnings;
  auto t = text::ChatTemplate::choose(*tok_, "", warnings);
  ASSERT_TRUE(t.is_ok());
  EXPECT_TRUE(t->is_jinja());
  std::vector<text::ChatMessage> msgs = {{"system", "Be brief.", {}}, {"user", "Hi", {}}};
  auto rendered = t->render(msgs, text::ChatOptions{});
  ASSERT_TRUE(rendered.is_ok()) << rendered.status().message();
  EXPECT_EQ(body["usage"]["prompt_tokens"], tok_->encode(*rendered, false).size());
}

TEST_F(BatchJobChatTest, ATemplatesRaiseExceptionIsTheRequestsErrorLine) {
  const std::string file =
      (testing::test_data_dir() / "chat_templates" / "jinja" / "mistral-7b-instruct-v0.3.jinja")
          .string();
  auto results = run({chat("ok", json::array({{{"role", "system"}, {"content", "Be brief."}},
                                              {{"role", "user"}, {"content", "Hi"}}})),
                      chat("bad", json::array({{{"role", "user"}, {"content", "a"}},
                                               {{"role", "user"}, {"content", "b"}}}))},
                     file);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results["ok"]["error"].is_null()) << results["ok"].dump();
  const auto& err = results["bad"]["error"];
  EXPECT_EQ(err["code"], "invalid_prompt");
  EXPECT_EQ(err["message"],
            "line 2 (custom_id 'bad'): chat template " + file +
                ", line 18: After the optional system message, conversation roles must alternate "
                "user/assistant/user/assistant/...");
}

TEST_F(BatchJobChatTest, AFamilyWhoseMarkersTheTokenizerLacksWarnsOnce) {
  std::string log;
  auto results = run({chat("a", json::array({{{"role", "user"}, {"content", "Hi"}}})),
                      chat("b", json::array({{{"role", "user"}, {"content", "Ho"}}}))},
                     "chatml", &log);
  EXPECT_EQ(results.size(), 2u);
  size_t count = 0;
  for (size_t p = log.find("<|im_start|>"); p != std::string::npos;
       p = log.find("<|im_start|>", p + 1))
    ++count;
  EXPECT_EQ(count, 1u) << log;
  EXPECT_NE(log.find("are not special tokens of this tokenizer"), std::string::npos) << log;
}

}  // namespace
}  // namespace strata::runtime
