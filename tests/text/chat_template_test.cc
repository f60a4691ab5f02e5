// Chat templates against references strata did not write: the built-in families and the Jinja
// interpreter against transformers' apply_chat_template on the same templates (renderings.json,
// made by make_tokenizer_refs.py), and the real templates of tests/data/chat_templates/jinja over
// many conversations against jinja2 in transformers' environment (references.json, made by
// make_chat_template_refs.py); then how a template is chosen and how its errors read.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "text/batch_request.h"
#include "text/json_util.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

TEST(ChatTemplate, MatchesTransformersRenderings) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  auto templates = read_json_file((dir / "templates.json").string());
  auto convs = read_json_file((dir / "conversations.json").string());
  auto refs = read_json_file((dir / "renderings.json").string());
  ASSERT_TRUE(templates.is_ok() && convs.is_ok() && refs.is_ok());
  int rendered = 0, errors = 0;
  for (const auto& r : (*refs)["renderings"]) {
    const std::string family_name = r["family"].get<std::string>();
    const auto& t = (*templates)[family_name];
    auto family = detect_chat_family(t["chat_template"].get<std::string>());
    ASSERT_TRUE(family.has_value()) << family_name;
    EXPECT_STREQ(chat_family_name(*family), family_name.c_str());
    std::vector<ChatMessage> messages;
    for (const auto& m : (*convs)[r["conversation"].get<size_t>()])
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>(), {}});
    auto out = render_chat(*family, messages, t["bos_token"].get<std::string>(), t["eos_token"].get<std::string>());
    SCOPED_TRACE(family_name + " conversation " + r["conversation"].dump());
    if (r.contains("error")) {
      ASSERT_FALSE(out.is_ok()) << *out;
      EXPECT_NE(out.status().message().find(r["error"].get<std::string>()), std::string::npos) << out.status().message();
      ++errors;
    } else {
      ASSERT_TRUE(out.is_ok()) << out.status().to_string();
      EXPECT_EQ(*out, r["rendered"].get<std::string>());
      ++rendered;
    }
  }
  EXPECT_GE(rendered, 20);
  EXPECT_GE(errors, 4);
}

TEST(ChatTemplate, NamesAndDetection) {
  EXPECT_EQ(*parse_chat_family("chatml"), ChatFamily::kChatml);
  auto bad = parse_chat_family("vicuna");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("vicuna"), std::string::npos);
  EXPECT_FALSE(detect_chat_family("{{ messages }}").has_value());
}

using ojson = nlohmann::ordered_json;

ojson read_ordered(const std::filesystem::path& p) {
  std::ifstream in(p);
  return ojson::parse(in, nullptr, /*allow_exceptions=*/false);
}

std::tm reference_clock() {  // make_chat_template_refs.py CLOCK
  std::tm tm{};
  tm.tm_year = 2025 - 1900;
  tm.tm_mon = 2;
  tm.tm_mday = 14;
  tm.tm_hour = 9;
  tm.tm_min = 26;
  tm.tm_sec = 53;
  timegm(&tm);
  return tm;
}

std::vector<ChatMessage> chat_messages(const ojson& list) {
  std::vector<ChatMessage> out;
  for (const auto& m : list) out.push_back({m["role"].get<std::string>(), "", m});
  return out;
}

std::string template_text(const std::filesystem::path& dir, const ojson& model,
                          const ojson& legacy) {
  if (model.contains("file")) {
    std::ifstream in(dir / model["file"].get<std::string>(), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  return legacy[model["templates_json"].get<std::string>()]["chat_template"].get<std::string>();
}

ChatTemplate model_template(const std::filesystem::path& dir, const std::string& name,
                            const ojson& model, const ojson& legacy) {
  auto t = ChatTemplate::from_jinja(template_text(dir, model, legacy), name);
  EXPECT_TRUE(t.is_ok()) << name << ": " << t.status().message();
  std::vector<std::pair<std::string, std::string>> special;
  for (const auto& [k, v] : model["special_tokens"].items())
    special.emplace_back(k, v.get<std::string>());
  t->set_special_tokens(special);
  return std::move(*t);
}

// The real templates of Llama 3.1/3.2, Qwen2.5, Qwen3, QwQ, Mistral v0.3/Nemo/Small 3.2, Gemma
// 2/3, Phi-3.5/4/4-mini and DeepSeek-R1 (and the four of templates.json), byte for byte.
TEST(ChatTemplate, RealTemplatesMatchJinja2) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  const ojson models = read_ordered(dir / "models.json");
  const ojson convs = read_ordered(dir / "conversations_jinja.json");
  const ojson refs = read_ordered(dir / "references.json");
  const ojson legacy = read_ordered(dir / "templates.json");
  ASSERT_TRUE(models.is_object() && convs.is_object() && refs.is_object() && legacy.is_object());
  std::map<std::string, ChatTemplate> templates;
  for (const auto& [name, m] : models.items())
    templates.emplace(name, model_template(dir, name, m, legacy));
  int rendered = 0, errors = 0;
  std::set<std::string> covered;
  for (const auto& r : refs["renderings"]) {
    const std::string name = r["template"].get<std::string>();
    const auto& conv = convs[r["conversation"].get<std::string>()];
    SCOPED_TRACE(name + " / " + r["conversation"].get<std::string>() + " / add_generation_prompt=" +
                 r["add_generation_prompt"].dump() + " / " + r["kwargs"].dump());
    ChatOptions o;
    o.add_generation_prompt = r["add_generation_prompt"].get<bool>();
    o.kwargs = r["kwargs"];
    if (conv.contains("tools")) o.tools = conv["tools"];
    o.now = reference_clock();
    auto out = templates.at(name).render(chat_messages(conv["messages"]), o);
    if (r.contains("rendered")) {
      ASSERT_TRUE(out.is_ok()) << out.status().message();
      EXPECT_EQ(*out, r["rendered"].get<std::string>());
      ++rendered;
      covered.insert(name);
    } else {
      ASSERT_FALSE(out.is_ok()) << "rendered where jinja2 failed with " << r["error"] << ":\n"
                                << *out;
      std::string want = r["error"].get<std::string>();
      if (!want.empty() && want.back() == '.') want.pop_back();
      EXPECT_NE(out.status().message().find(want), std::string::npos) << out.status().message();
      EXPECT_EQ(out.status().message().rfind(name + ", line ", 0), 0u) << out.status().message();
      ++errors;
    }
  }
  EXPECT_EQ(covered.size(), models.size());
  EXPECT_GE(rendered, 350);
  EXPECT_GE(errors, 40);
}

// The Jinja interpreter on the four templates of templates.json gives what transformers gave.
TEST(ChatTemplate, JinjaMatchesTransformersRenderings) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  const ojson templates = read_ordered(dir / "templates.json");
  const ojson convs = read_ordered(dir / "conversations.json");
  const ojson refs = read_ordered(dir / "renderings.json");
  int compared = 0;
  for (const auto& r : refs["renderings"]) {
    const std::string family = r["family"].get<std::string>();
    const auto& t = templates[family];
    auto chat = ChatTemplate::from_jinja(t["chat_template"].get<std::string>(), family);
    ASSERT_TRUE(chat.is_ok()) << chat.status().message();
    chat->set_special_tokens({{"bos_token", t["bos_token"].get<std::string>()},
                              {"eos_token", t["eos_token"].get<std::string>()}});
    SCOPED_TRACE(family + " conversation " + r["conversation"].dump());
    auto out = chat->render(chat_messages(convs[r["conversation"].get<size_t>()]), ChatOptions{});
    if (r.contains("error")) {
      ASSERT_FALSE(out.is_ok());
      EXPECT_NE(out.status().message().find(r["error"].get<std::string>()), std::string::npos)
          << out.status().message();
    } else {
      ASSERT_TRUE(out.is_ok()) << out.status().message();
      EXPECT_EQ(*out, r["rendered"].get<std::string>());
    }
    ++compared;
  }
  EXPECT_GE(compared, 24);
}

nlohmann::json tiny_tokenizer() {
  return nlohmann::json::parse(R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
    "added_tokens": [{"id": 2, "content": "<|im_start|>", "special": true}, {"id": 3, "content": "<|im_end|>", "special": true},
                     {"id": 4, "content": "<s>", "special": true}, {"id": 5, "content": "</s>", "special": true}],
    "normalizer": null, "pre_tokenizer": null, "decoder": null, "post_processor": null})");
}

std::unique_ptr<Tokenizer> tokenizer_with(const nlohmann::json& config) {
  auto t = Tokenizer::from_json(tiny_tokenizer(), config, "tokenizer.json");
  EXPECT_TRUE(t.is_ok()) << t.status().message();
  return std::move(*t);
}

TEST(ChatTemplate, ChoosesTheModelsOwnTemplateFirst) {
  auto tok = tokenizer_with(
      {{"bos_token", "<s>"},
       {"eos_token", "</s>"},
       {"chat_template",
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"}});
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, "", warnings);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  EXPECT_TRUE(t->is_jinja());
  EXPECT_TRUE(warnings.empty());
  const std::vector<ChatMessage> msgs = {{"user", "hi", {}}};
  EXPECT_EQ(*t->render(msgs, ChatOptions{}), "<s>[user]hi");
}

TEST(ChatTemplate, PicksTheToolUseTemplateForRequestsWithTools) {
  auto tok =
      tokenizer_with({{"chat_template",
                       {{{"name", "default"}, {"template", "plain"}},
                        {{"name", "tool_use"}, {"template", "tools: {{ tools | length }}"}}}}});
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, "", warnings);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  const std::vector<ChatMessage> msgs = {{"user", "hi", {}}};
  EXPECT_EQ(*t->render(msgs, ChatOptions{}), "plain");
  ChatOptions with_tools;
  with_tools.tools = ojson::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(*t->render(msgs, with_tools), "tools: 1");
}

TEST(ChatTemplate, AFamilyWhoseMarkersAreNotSpecialTokensWarns) {
  auto tok = tokenizer_with({{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, "chatml", warnings);
  ASSERT_TRUE(t.is_ok());
  EXPECT_TRUE(warnings.empty());  // <|im_start|> and <|im_end|> are special here
  t = ChatTemplate::choose(*tok, "llama3", warnings);
  ASSERT_TRUE(t.is_ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("<|start_header_id|>"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("plain text"), std::string::npos) << warnings[0];
  const std::vector<ChatMessage> msgs = {{"user", "hi", {}}};
  EXPECT_EQ(*t->render(msgs, ChatOptions{}),
            "<s><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, AJinjaFileOverridesAndABadChoiceIsAnError) {
  auto tok = tokenizer_with({{"chat_template", "model's own"}});
  const auto dir = testing::make_temp_dir("strata-chat");
  const std::string file = (dir / "mine.jinja").string();
  std::ofstream(file) << "mine: {{ messages[0].content }}\n";
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, file, warnings);
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  const std::vector<ChatMessage> msgs = {{"user", "hi", {}}};
  EXPECT_EQ(*t->render(msgs, ChatOptions{}), "mine: hi");
  auto bad = ChatTemplate::choose(*tok, "vicuna", warnings);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("vicuna"), std::string::npos);
  std::ofstream(file) << "line 1\n{% if %}\n";
  bad = ChatTemplate::choose(*tok, file, warnings);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find(file + ", line 2:"), std::string::npos)
      << bad.status().message();
}

TEST(ChatTemplate, WithoutATemplateChatRequestsSayWhatToPass) {
  auto tok = tokenizer_with(nlohmann::json::object());
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, "", warnings);
  ASSERT_TRUE(t.is_ok());
  auto out = t->render(std::vector<ChatMessage>{{"user", "hi", {}}}, ChatOptions{});
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(out.status().message().find("--chat-template"), std::string::npos);
}

TEST(ChatTemplate, AnUnreadableModelTemplateFallsBackToTheFamilyItLooksLike) {
  auto tok = tokenizer_with(
      {{"chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}{% while %}"}});
  std::vector<std::string> warnings;
  auto t = ChatTemplate::choose(*tok, "", warnings);
  ASSERT_TRUE(t.is_ok());
  EXPECT_FALSE(t->is_jinja());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("unknown tag 'while'"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("chatml"), std::string::npos) << warnings[0];
}

// Mistral v0.3's own check surfaces as the request's error, naming the template and its line.
TEST(ChatTemplate, MistralRolesMustAlternateNamesTheTemplate) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  std::ifstream in(dir / "jinja" / "mistral-7b-instruct-v0.3.jinja", std::ios::binary);
  const std::string text(std::istreambuf_iterator<char>(in), {});
  auto t = ChatTemplate::from_jinja(text, "mistral/tokenizer_config.json");
  ASSERT_TRUE(t.is_ok()) << t.status().message();
  const std::vector<ChatMessage> msgs = {
      {"system", "be brief", {}}, {"user", "a", {}}, {"user", "b", {}}};
  auto out = t->render(msgs, ChatOptions{});
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().message(),
            "mistral/tokenizer_config.json, line 18: After the optional system message, "
            "conversation roles must alternate user/assistant/user/assistant/...");
  // With a system message and alternating roles it renders (the issue's old failure).
  const std::vector<ChatMessage> ok = {{"system", "be brief", {}}, {"user", "a", {}}};
  auto good = t->render(ok, ChatOptions{});
  ASSERT_TRUE(good.is_ok()) << good.status().message();
  EXPECT_EQ(*good, "[INST] be brief\n\na[/INST]");
}

// A request line as strata generate reads it reaches the template intact: tool calls, tools (in
// the request's key order), chat_template_kwargs and add_generation_prompt.
TEST(ChatTemplate, RequestFieldsReachTheTemplate) {
  const auto dir = testing::test_data_dir() / "chat_templates";
  const ojson models = read_ordered(dir / "models.json");
  const ojson convs = read_ordered(dir / "conversations_jinja.json");
  const ojson refs = read_ordered(dir / "references.json");
  const ChatTemplate qwen3 = model_template(dir, "qwen3-0.6b", models["qwen3-0.6b"], ojson());
  int checked = 0;
  for (const auto& r : refs["renderings"]) {
    if (r["template"] != "qwen3-0.6b" || r["conversation"] != "tool_call" ||
        !r.contains("rendered"))
      continue;
    ojson body = {{"messages", convs["tool_call"]["messages"]},
                  {"tools", convs["tool_call"]["tools"]},
                  {"add_generation_prompt", r["add_generation_prompt"]}};
    if (!r["kwargs"].empty()) body["chat_template_kwargs"] = r["kwargs"];
    const ojson line = {
        {"custom_id", "c"}, {"method", "POST"}, {"url", "/v1/chat/completions"}, {"body", body}};
    ParsedLine parsed = parse_request_line(line.dump(), 1);
    ASSERT_TRUE(parsed.request) << parsed.error.message;
    auto out = qwen3.render(parsed.request->messages, parsed.request->chat);
    ASSERT_TRUE(out.is_ok()) << out.status().message();
    EXPECT_EQ(*out, r["rendered"].get<std::string>()) << r["kwargs"].dump();
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

TEST(ChatTemplate, BadChatRequestFieldsAreErrorLines) {
  struct Case {
    const char* body;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": {"type": "function"}})",
       "'tools' must be an array"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [1]})",
       "'tools' must be an array of tool objects"},
      {R"({"messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": [1]})",
       "'chat_template_kwargs' must be an object"},
      {R"({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": "yes"})",
       "'add_generation_prompt' must be true or false"},
      {R"({"messages": [{"role": "assistant", "tool_calls": {"id": 1}}]})",
       "'messages[0].tool_calls' must be an array"},
  };
  for (const auto& c : cases) {
    const std::string line =
        std::string(
            R"({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": )") +
        c.body + "}";
    ParsedLine parsed = parse_request_line(line, 7);
    ASSERT_FALSE(parsed.request) << c.body;
    EXPECT_EQ(parsed.error.code, "invalid_request");
    EXPECT_NE(parsed.error.message.find(c.expect), std::string::npos) << parsed.error.message;
    EXPECT_NE(parsed.error.message.find("line 7"), std::string::npos) << parsed.error.message;
  }
  ChatTemplate t = *ChatTemplate::from_jinja("{{ messages | length }}", "t");
  ChatOptions o;
  o.kwargs = ojson::parse(R"({"messages": []})");
  auto out = t.render(std::vector<ChatMessage>{{"user", "x", {}}}, o);
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().message().find("chat_template_kwargs cannot set 'messages'"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::text
