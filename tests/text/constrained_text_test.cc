// The text a constrained answer comes out as is the text its constraint checked: the bytes its
// tokens add (TokenTrie) decode, after any prompt, to exactly those bytes as UTF-8 (the Unicode
// Standard), so a JSON answer reads as the JSON the automaton accepted (nlohmann::json's parser,
// which checks UTF-8 as RFC 8259 asks, is the independent judge).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "testing/test_data.h"
#include "text/constraint.h"
#include "text/incremental_decoder.h"
#include "text/json_automaton.h"
#include "text/token_trie.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

std::unique_ptr<Tokenizer> llama2() {
  auto t = Tokenizer::load_dir(testing::test_data_dir() / "tokenizers" / "llama2");
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return t.is_ok() ? std::move(t).value() : nullptr;
}

int32_t byte_token(const Tokenizer& tok, unsigned char b) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", b);
  const auto id = tok.token_to_id(name);
  EXPECT_TRUE(id.has_value()) << name;
  return id.value_or(0);
}

// What the incremental decoder (as the batch job runs it) makes of `generated` after `prompt`.
std::string answer(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                   const std::vector<int32_t>& generated) {
  IncrementalDecoder dec(tok, prompt);
  std::string out;
  for (int32_t t : generated) out += dec.push(t);
  return out + dec.flush();
}

std::string hex(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    char buf[4];
    std::snprintf(buf, sizeof buf, "%02x ", c);
    out += buf;
  }
  return out;
}

// A prompt given as ids may end inside a character (a lead byte <0xF1>, or two bytes of a
// three-byte character). A byte-fallback decoder turns a run of byte tokens that is not valid
// UTF-8 into one U+FFFD per token: the answer's first bytes, "{" and "\"" spelled as <0x7B> and
// <0x22>, must not join that run.
TEST(ConstrainedText, APromptEndingInsideACharacterLeavesTheAnswerWhole) {
  auto tok = llama2();
  ASSERT_TRUE(tok);
  const std::string want = "{\"name\": \"Ad\xC3\xA9\"}";  // {"name": "Adé"}
  std::vector<int32_t> generated = {byte_token(*tok, '{'), byte_token(*tok, '"')};
  const auto name = tok->token_to_id("name");
  ASSERT_TRUE(name.has_value());
  generated.push_back(*name);
  for (unsigned char b : std::string("\": \"Ad\xC3\xA9\"}"))
    generated.push_back(byte_token(*tok, b));
  TokenTrie trie(*tok, tok->vocab_size());
  std::string spelled;
  for (int32_t t : generated) spelled += trie.text(t);
  ASSERT_EQ(spelled, want);

  const std::vector<int32_t> words = tok->encode("Tell me about Ada", /*add_special_tokens=*/true);
  const std::vector<std::vector<unsigned char>> tails = {
      {0xF1}, {0xE4}, {0xE4, 0xB8}, {0xF0, 0x9F, 0x98}, {0xC3},
      {0x80}, {0xFF}, {'A', 0xE4},  {0xE4, 0xB8, 0xAD}, {}};
  for (const auto& tail : tails) {
    std::vector<int32_t> prompt = words;
    for (unsigned char b : tail) prompt.push_back(byte_token(*tok, b));
    const std::string text = answer(*tok, prompt, generated);
    EXPECT_EQ(text, want) << "prompt ending in bytes " << hex(std::string(tail.begin(), tail.end()))
                          << ": " << hex(text);
    EXPECT_TRUE(nlohmann::json::accept(text)) << text;
  }
}

// Random JSON Schema answers, walked a token at a time through the trie's allowed tokens (byte
// tokens favoured), after random prompt tails of byte tokens and words: the decoded answer equals
// the bytes the constraint accepted and parses as JSON.
TEST(ConstrainedText, SchemaAnswersDecodeToTheBytesTheConstraintAccepted) {
  auto tok = llama2();
  ASSERT_TRUE(tok);
  TokenTrie trie(*tok, tok->vocab_size());
  auto c = Constraint::json_schema(nlohmann::ordered_json::parse(R"({
      "type": "object",
      "properties": {"name": {"type": "string", "maxLength": 12}, "tags": {"type": "array",
                     "items": {"type": "string", "maxLength": 6}, "maxItems": 3}},
      "required": ["name", "tags"], "additionalProperties": false})"),
                                   "schema");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  std::mt19937 rng(11);
  std::vector<uint8_t> allowed;
  int whole = 0;
  for (int n = 0; n < 200; ++n) {
    std::vector<int32_t> prompt = tok->encode("Describe someone:", /*add_special_tokens=*/true);
    for (int k = static_cast<int>(rng() % 4); k > 0; --k)
      prompt.push_back(rng() % 2 ? byte_token(*tok, static_cast<unsigned char>(0x80 + rng() % 0x80))
                                 : static_cast<int32_t>(259 + rng() % 31000));
    ConstraintState st = (*c)->start();
    std::vector<int32_t> generated;
    std::string spelled;
    while (!st.dead_end() && generated.size() < 60) {
      trie.allowed(st, allowed);
      std::vector<int32_t> bytes, any;
      for (size_t t = 0; t < allowed.size(); ++t) {
        if (!allowed[t]) continue;
        any.push_back(static_cast<int32_t>(t));
        if (trie.text(static_cast<int32_t>(t)).size() == 1 &&
            tok->id_to_token(static_cast<int32_t>(t))->starts_with("<0x"))
          bytes.push_back(static_cast<int32_t>(t));
      }
      if (any.empty()) break;
      const auto& from = !bytes.empty() && rng() % 2 ? bytes : any;
      const int32_t t = from[rng() % from.size()];
      for (unsigned char b : trie.text(t)) ASSERT_TRUE(st.feed(b));
      generated.push_back(t);
      spelled += trie.text(t);
    }
    if (!st.complete()) continue;
    ++whole;
    const std::string text = answer(*tok, prompt, generated);
    ASSERT_EQ(text, spelled) << hex(text) << "\nspelled " << hex(spelled);
    ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  }
  EXPECT_GT(whole, 20);
}

// JSON mode's automaton takes in a string only well-formed UTF-8, as the parser does: else a
// byte-fallback decoder would turn a lead byte and the closing quote after it (<0xE4> <0x22>)
// into two U+FFFD, and the answer would not parse.
TEST(ConstrainedText, JsonModeStringsAreWellFormedUtf8) {
  auto run = [](const std::string& s) {
    JsonAutomaton a;
    for (unsigned char c : s)
      if (!a.feed(c)) return -1;
    return a.complete() ? 1 : 0;
  };
  auto parser_says_object = [](const std::string& s) {
    return nlohmann::json::accept(s) && nlohmann::json::parse(s).is_object();
  };
  EXPECT_EQ(run("{\"a\":\"\xE4\""), -1);
  EXPECT_EQ(run("{\"a\":\"\xE4\xB8\xAD\"}"), 1);
  // Every string of one to four bytes from a set around UTF-8's boundaries (Unicode's table
  // 3-7), inside a value and a key: the automaton agrees with the parser.
  const std::vector<unsigned char> edges = {0x20, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                            0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                            0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  std::vector<std::string> bodies = {""};
  for (int len = 1; len <= 4; ++len) {
    std::vector<std::string> next;
    for (const auto& b : bodies)
      if (static_cast<int>(b.size()) == len - 1)
        for (unsigned char e : edges) next.push_back(b + static_cast<char>(e));
    bodies.insert(bodies.end(), next.begin(), next.end());
  }
  int objects = 0;
  for (const auto& b : bodies)
    for (const std::string s : {"{\"k\":\"" + b + "\"}", "{\"" + b + "\":1}"}) {
      const bool want = parser_says_object(s);
      objects += want;
      ASSERT_EQ(run(s) == 1, want) << hex(s);
      if (!want) EXPECT_EQ(run(s), -1) << hex(s);  // refused at its first bad byte, not left open
    }
  EXPECT_GT(objects, 1000);
}

}  // namespace
}  // namespace strata::text
