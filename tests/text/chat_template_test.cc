// Native chat-template rendering against transformers' apply_chat_template on the real templates
// of each family (tests/data/chat_templates, made by make_tokenizer_refs.py).
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "text/json_util.h"

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
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
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

}  // namespace
}  // namespace strata::text
