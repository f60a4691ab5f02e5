// The JSON automaton against nlohmann::json's parser (an independent validator): a text is a whole
// object for the automaton exactly when the parser reads it as an object (within the automaton's
// depth and whitespace limits), and every prefix of a valid text is accepted byte by byte.
#include "text/json_automaton.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <regex>
#include <string>
#include <vector>

#include "text/token_trie.h"
#include "testing/test_data.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

// -1: refused at some byte; 0: accepted but not complete; 1: a complete object.
int run(const std::string& s) {
  JsonAutomaton a;
  for (unsigned char c : s)
    if (!a.feed(c)) return -1;
  return a.complete() ? 1 : 0;
}

bool parser_says_object(const std::string& s) {
  if (!nlohmann::json::accept(s)) return false;
  return nlohmann::json::parse(s).is_object();
}

TEST(JsonAutomaton, WholeObjectsAsTheParserReadsThem) {
  const std::vector<std::string> objects = {
      "{}", " {\"a\":1}", "{\"a\": [1, -2.5e+3, 0, 0.25, 1E9, true, false, null, \"x\\\"y\\\\\\u00e9\\n\"]}",
      "{\"nested\": {\"deep\": [[{}], []]}, \"s\": \"caf\xc3\xa9\"}", "{\"k\":{}}\n", "{\"a\":-0}"};
  for (const auto& s : objects) {
    EXPECT_TRUE(parser_says_object(s)) << s;
    EXPECT_EQ(run(s), 1) << s;
  }
  // Not objects, or not JSON: refused at some byte, or left incomplete.
  const std::vector<std::string> others = {"[1]",        "\"s\"",         "{'a': 1}", "{\"a\":01}",
                                           "{\"a\":1,}", "{\"a\" 1}",     "{\"a\":1}}", "{\"a\":tru}",
                                           "{\"a\":1.}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":-}",
                                           "{\"a\":[1 2]}", "{1:2}", "{\"a\":1] "};
  for (const auto& s : others) {
    EXPECT_FALSE(parser_says_object(s)) << s;
    EXPECT_NE(run(s), 1) << s;
  }
  EXPECT_EQ(run("{\"a\": [1, {\"b\""), 0);  // a prefix: accepted, not complete
}

TEST(JsonAutomaton, NumbersStayFiniteDoubles) {
  EXPECT_EQ(run("{\"a\": 6E81}"), 1);
  EXPECT_EQ(run("{\"a\": 6E811}"), -1);
  EXPECT_EQ(run("{\"a\": " + std::string(20, '9') + ".5e-99}"), 1);
  EXPECT_EQ(run("{\"a\": " + std::string(21, '9') + "}"), -1);
  EXPECT_EQ(run("{\"a\": 0." + std::string(21, '1') + "}"), -1);
}

TEST(JsonAutomaton, DepthAndWhitespaceAreBounded) {
  std::string deep = "{\"a\":";
  for (int i = 0; i < JsonAutomaton::kMaxDepth; ++i) deep += "[";
  EXPECT_EQ(run(deep), -1);
  EXPECT_EQ(run("{" + std::string(JsonAutomaton::kMaxSpaces, ' ') + "}"), 1);
  EXPECT_EQ(run("{" + std::string(JsonAutomaton::kMaxSpaces + 1, ' ') + "}"), -1);
}

TEST(JsonAutomaton, RandomTextsAgreeWithTheParser) {
  // Texts from JSON's own alphabet, so that many are objects or near misses.
  const std::string alphabet = "{}[]:,\"\\ -0123456789.eE+truefalsnbu";
  std::mt19937 rng(7);
  int objects = 0;
  for (int n = 0; n < 200000; ++n) {
    std::string s = "{";
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) s += alphabet[rng() % alphabet.size()];
    // Exponents past two digits are the automaton's own bound (a finite double), not JSON's.
    if (std::regex_search(s, std::regex("[eE][+-]?[0-9][0-9][0-9]"))) continue;
    const bool want = parser_says_object(s);
    objects += want;
    ASSERT_EQ(run(s) == 1, want) << s;
  }
  EXPECT_GT(objects, 10);
}

TEST(TokenTrie, AllowsExactlyTheTokensWhoseBytesContinueTheText) {
  auto tok = Tokenizer::load_dir(testing::test_data_dir() / "fixtures" / "llama_text");
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  const int64_t vocab = (*tok)->vocab_size();
  TokenTrie trie(**tok, vocab);
  JsonAutomaton a;
  for (unsigned char c : std::string("{\"key\": ")) ASSERT_TRUE(a.feed(c));
  std::vector<uint8_t> allowed;
  trie.allowed(a, allowed);
  int64_t n = 0;
  for (int32_t t = 0; t < vocab; ++t) {
    JsonAutomaton b = a;
    bool ok = !trie.text(t).empty();
    for (unsigned char c : trie.text(t)) ok = ok && b.feed(c);
    EXPECT_EQ(allowed[static_cast<size_t>(t)] != 0, ok) << t << " '" << trie.text(t) << "'";
    n += ok;
  }
  EXPECT_GT(n, 0);
  EXPECT_LT(n, vocab);
}

}  // namespace
}  // namespace strata::text
