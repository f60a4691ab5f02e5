// TokenMasker against the plain trie walk: every mask it gives (kept subtree results reused between
// states, moves read from its DFA's rows by byte class, walks that copy states once the DFA is
// full, walks on several threads at once) must be the walk's, and its class keys must keep apart
// the states that allow different tokens (a bounded string one character before its maximum and at
// it) while joining those that differ only in a count no token can reach.
#include "text/token_mask.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "testing/test_data.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const Constraint> schema(const std::string& s) {
  auto c = Constraint::json_schema(ojson::parse(s), "schema");
  EXPECT_TRUE(c.is_ok()) << s << ": " << c.status().to_string();
  return c.is_ok() ? *c : nullptr;
}

ConstraintState after(const Constraint& c, const std::string& text) {
  ConstraintState s = c.start();
  for (unsigned char b : text) EXPECT_TRUE(s.feed(b)) << "'" << text << "' refused at byte " << int(b);
  return s;
}

// A small vocabulary with tokens of every length up to 8 inside and around JSON strings, numbers
// and arrays, so that masks differ between neighbouring counts.
std::vector<std::string> small_vocab() {
  std::vector<std::string> v;
  for (int n = 1; n <= 8; ++n) {
    v.push_back(std::string(static_cast<size_t>(n), 'a'));
    v.push_back(std::string(static_cast<size_t>(n - 1), 'b') + "\"");
    v.push_back(std::string(static_cast<size_t>(n), '7'));
    v.push_back(std::string(static_cast<size_t>(n - 1), '1') + ",");
    v.push_back("\"" + std::string(static_cast<size_t>(n - 1), 'c'));
  }
  for (const char* t : {"{", "}", "[", "]", ",", ":", " ", "\"", "\",", "\"}", "\"]", "],", "]}", "\\", "\\n", "\\u",
                        "0", "-", ".", "e", "tr", "ue", "null", "\"name\"", "\"name\":", "\"tags\":[", "\"v\":",
                        "\"kids\":[", "{\"v\":", "x@y", "@", ".com", "\xc3\xa9", "\xc3", "\xa9", "é\""})
    v.push_back(t);
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

const char* const kSchemas[] = {
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"]})",
    R"({"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":4},"maxItems":3},"score":{"type":"number","minimum":0,"maximum":1}},"required":["tags"]})",
    R"({"$defs":{"n":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/n"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/n"})",
    R"({"type":"object","properties":{"email":{"type":"string","format":"email"},"note":{"type":"string"}},"required":["email","note"]})",
    R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":5})",
};

// Random walks over `trie`'s tokens from the constraint's start; at every state the masker's set
// must equal the plain walk's. The masker is shared by all walks so that later states reuse what
// earlier ones kept.
void check_walks(const TokenTrie& trie, const Constraint& c, const TokenMasker& masker, int walks, int steps,
                 uint32_t seed, int64_t* states_checked) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> want, got;
  for (int w = 0; w < walks; ++w) {
    ConstraintState s = c.start();
    for (int step = 0; step < steps; ++step) {
      trie.allowed(s, want);
      masker.allowed(s, got);
      ASSERT_EQ(want, got) << "walk " << w << " step " << step;
      ++*states_checked;
      std::vector<int32_t> ok;
      for (size_t t = 0; t < want.size(); ++t)
        if (want[t]) ok.push_back(static_cast<int32_t>(t));
      if (ok.empty()) break;
      const int32_t t = ok[rng() % ok.size()];
      for (unsigned char b : trie.text(t)) ASSERT_TRUE(s.feed(b));
    }
  }
}

TEST(TokenMasker, MasksAreThePlainTrieWalksOnASmallVocabulary) {
  const TokenTrie trie(small_vocab());
  TokenMasker::Options keep_all;
  keep_all.min_tokens = 1;  // keep every subtree's result, so that nearly every mask reuses some
  int64_t states = 0;
  uint32_t seed = 1;
  for (const char* s : kSchemas) {
    auto c = schema(s);
    ASSERT_TRUE(c);
    const TokenMasker masker(trie, *c, keep_all);
    EXPECT_GT(masker.levels(), 0);
    check_walks(trie, *c, masker, 40, 30, seed++, &states);
    EXPECT_GT(masker.kept_bytes(), 0u);
  }
  auto re = Constraint::regex("[a-c]{2,9}(,[0-9]{1,3}){0,4}\"?", "guided_regex");
  ASSERT_TRUE(re.is_ok());
  const TokenMasker masker(trie, **re, keep_all);
  check_walks(trie, **re, masker, 40, 20, seed++, &states);
  EXPECT_GT(states, 1000);
}

TEST(TokenMasker, MasksAreThePlainTrieWalksOnGpt2sVocabulary) {
  auto tok = Tokenizer::load_dir(testing::test_data_dir() / "tokenizers" / "gpt2");
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  const TokenTrie trie(**tok, (*tok)->vocab_size());
  int64_t states = 0;
  uint32_t seed = 11;
  for (const char* s : kSchemas) {
    auto c = schema(s);
    ASSERT_TRUE(c);
    const TokenMasker masker(trie, *c);
    check_walks(trie, *c, masker, 6, 14, seed++, &states);
  }
  // JSON mode has no grammar: the plain walk.
  const auto json = Constraint::json_object();
  const TokenMasker masker(trie, *json);
  check_walks(trie, *json, masker, 2, 10, seed++, &states);
  EXPECT_GT(states, 200);
}

TEST(TokenMasker, ABoundedStringsLastCharacterKeepsItsOwnClass) {
  auto c = schema(R"({"type":"string","maxLength":5})");
  ASSERT_TRUE(c);
  const TokenTrie trie(small_vocab());
  TokenMasker::Options keep_all;
  keep_all.min_tokens = 1;
  const TokenMasker masker(trie, *c, keep_all);
  const ConstraintState four = after(*c, "\"aaaa"), five = after(*c, "\"aaaaa");
  // One more byte tells them apart: 'a' continues four characters, not five.
  EXPECT_NE(masker.class_key(four, 1), masker.class_key(five, 1));
  // Their masks, the one at four characters kept first, differ as the plain walk's do.
  std::vector<uint8_t> m4, m5, p4, p5;
  masker.allowed(four, m4);
  masker.allowed(five, m5);
  trie.allowed(four, p4);
  trie.allowed(five, p5);
  EXPECT_EQ(m4, p4);
  EXPECT_EQ(m5, p5);
  EXPECT_NE(m4, m5);
  // Any two lengths differ within the bytes left to the shorter's maximum.
  for (int a = 0; a <= 5; ++a)
    for (int b = a + 1; b <= 5; ++b) {
      const ConstraintState sa = after(*c, "\"" + std::string(static_cast<size_t>(a), 'x'));
      const ConstraintState sb = after(*c, "\"" + std::string(static_cast<size_t>(b), 'x'));
      EXPECT_NE(masker.class_key(sa, 5 - a + 1), masker.class_key(sb, 5 - a + 1)) << a << " vs " << b;
      EXPECT_NE(masker.class_key(sa, 5 - b + 1), masker.class_key(sb, 5 - b + 1)) << a << " vs " << b;
    }
  // minLength: before the minimum the string may not close.
  auto lo = schema(R"({"type":"string","minLength":3,"maxLength":40})");
  const TokenMasker lo_masker(trie, *lo, keep_all);
  EXPECT_NE(lo_masker.class_key(after(*lo, "\"ab"), 1), lo_masker.class_key(after(*lo, "\"abc"), 1));
  EXPECT_EQ(lo_masker.class_key(after(*lo, "\"abcd"), 8), lo_masker.class_key(after(*lo, "\"abcde"), 8));
}

TEST(TokenMasker, CountsNoShortTextCanReachShareAClass) {
  auto c = schema(R"({"type":"string","maxLength":100})");
  ASSERT_TRUE(c);
  const TokenTrie trie(small_vocab());
  const TokenMasker masker(trie, *c);
  const ConstraintState s3 = after(*c, "\"abc"), s7 = after(*c, "\"abcdefg");
  // 97 and 93 characters left: equal for anything up to 93 bytes, apart from 94 on.
  EXPECT_EQ(masker.class_key(s3, 16), masker.class_key(s7, 16));
  EXPECT_EQ(masker.class_key(s3, 93), masker.class_key(s7, 93));
  ASSERT_GE(masker.levels(), 95);
  EXPECT_NE(masker.class_key(s3, 94), masker.class_key(s7, 94));
  // A free string's characters are one state already; its class is then the same at every level.
  auto free = schema(R"({"type":"string"})");
  const TokenMasker free_masker(trie, *free);
  EXPECT_TRUE(free_masker.stable());
  EXPECT_EQ(free_masker.class_key(after(*free, "\"ab"), 500), free_masker.class_key(after(*free, "\"abcdef"), 500));
  // Array items: the count matters once the remaining items could be written.
  auto arr = schema(R"({"type":"array","items":{"type":"integer"},"maxItems":3})");
  const TokenMasker arr_masker(trie, *arr);
  EXPECT_NE(arr_masker.class_key(after(*arr, "[1,2"), 1), arr_masker.class_key(after(*arr, "[1,2,3"), 1));
  EXPECT_EQ(arr_masker.class_key(after(*arr, "[1"), 1), arr_masker.class_key(after(*arr, "[1,2"), 1));
  EXPECT_NE(arr_masker.class_key(after(*arr, "[1"), 3), arr_masker.class_key(after(*arr, "[1,2"), 3));
}

// Tokens of every length from 1 to 40 bytes: string bodies of plain letters, escapes and two-byte
// characters, and bodies that close the string and go on (a comma, the next key), so that the
// length bands the masker walks one at a time each hold tokens that a bounded string's states
// near their maximum allow and refuse.
std::vector<std::string> long_vocab() {
  std::vector<std::string> v = small_vocab();
  for (int n = 1; n <= 40; ++n) {
    const auto k = static_cast<size_t>(n);
    v.push_back(std::string(k, 'q'));
    v.push_back(std::string(k - 1, 'r') + "\"");
    v.push_back(std::string(k - 1, 's') + "\",");
    v.push_back(std::string(k, 'r') + "\",\"b\":");
    v.push_back("\\n" + std::string(k, 't'));
    v.push_back(std::string(k, 'u') + "\\\"");  // an escaped quote: the string goes on
    std::string two;  // n two-byte characters, 2n bytes
    for (int i = 0; i < n && two.size() + 2 <= 40; ++i) two += "\xc3\xa9";
    v.push_back(two);
    v.push_back(two + "\"");
    v.push_back("\xa9" + std::string(k, 'q'));  // the end of a character, then letters
  }
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

TEST(TokenMasker, StatesAtEachDistanceFromAMaximumLengthGetThePlainWalksMasks) {
  const TokenTrie trie(long_vocab());
  auto c = schema(R"({"type":"object","properties":{"a":{"type":"string","maxLength":30},"b":{"type":"string","minLength":3,"maxLength":20}},"required":["a","b"],"additionalProperties":false})");
  ASSERT_TRUE(c);
  // The texts up to each count of characters in the bounded strings: letters, escapes (two bytes a
  // character, an escaped quote among them), two-byte characters, and the middle of one.
  std::vector<std::string> texts;
  const char* const kChars[] = {"x", "\\n", "\\\"", "\xc3\xa9"};
  for (int mix = 0; mix < 4; ++mix)
    for (int n = 0; n <= 30; ++n) {
      std::string a = "{\"a\":\"";
      for (int i = 0; i < n; ++i) a += kChars[(i * (mix + 1) + mix) % 4];
      texts.push_back(a);
      if (n < 30) texts.push_back(a + "\xc3");
      if (n <= 20) {
        std::string b = "{\"a\":\"x\",\"b\":\"";
        for (int i = 0; i < n; ++i) b += kChars[(i + mix) % 4];
        texts.push_back(b);
      }
    }
  for (int order = 0; order < 2; ++order) {
    // Far from the bound first (its kept results then meet the near states) and the other way.
    if (order == 1) std::reverse(texts.begin(), texts.end());
    for (int32_t min_tokens : {1, 4, 256}) {
      TokenMasker::Options options;
      options.min_tokens = min_tokens;
      const TokenMasker masker(trie, *c, options);
      std::vector<uint8_t> want, got;
      for (const std::string& t : texts) {
        const ConstraintState s = after(*c, t);
        trie.allowed(s, want);
        masker.allowed(s, got);
        ASSERT_EQ(want, got) << "after '" << t << "', min_tokens " << min_tokens << ", order " << order;
      }
    }
  }
  // Random walks through the same vocabulary, which close the strings with tokens that go on.
  const TokenMasker masker(trie, *c);
  int64_t states = 0;
  check_walks(trie, *c, masker, 30, 20, 31, &states);
  EXPECT_GT(states, 300);
}

TEST(TokenMasker, MasksAreThePlainTrieWalksInJsonMode) {
  const TokenTrie trie(small_vocab());
  const auto json = Constraint::json_object();
  const TokenMasker masker(trie, *json);
  EXPECT_EQ(masker.byte_classes(), 256);  // no grammar: every byte is its own class
  int64_t states = 0;
  check_walks(trie, *json, masker, 40, 30, 21, &states);
  EXPECT_GT(states, 500);
  EXPECT_GT(masker.states(), 10u);  // the walks' states were interned and their moves kept
}

TEST(TokenMasker, AFullDfaWalksOnByCopyingStates) {
  const TokenTrie trie(small_vocab());
  TokenMasker::Options tiny;
  tiny.min_tokens = 1;
  tiny.max_states = 2;  // the DFA fills up within the first walk
  TokenMasker::Options none;
  none.max_states = 0;  // every walk copies states
  int64_t states = 0;
  uint32_t seed = 31;
  for (const char* s : kSchemas) {
    auto c = schema(s);
    ASSERT_TRUE(c);
    const TokenMasker small(trie, *c, tiny), copying(trie, *c, none);
    check_walks(trie, *c, small, 20, 30, seed, &states);
    check_walks(trie, *c, copying, 5, 30, seed++, &states);
    EXPECT_EQ(small.states(), 2u);
    EXPECT_EQ(copying.states(), 0u);
  }
  const auto json = Constraint::json_object();
  const TokenMasker small(trie, *json, tiny);
  check_walks(trie, *json, small, 20, 30, seed, &states);
  EXPECT_EQ(small.states(), 2u);
  EXPECT_GT(states, 1000);
}

TEST(TokenMasker, ByteClassesKeepApartTheBytesThatAnEdgeTellsApart) {
  // [a-c] and [b-d] overlap: a, b-c and d move differently; x and y too; every other byte alike.
  auto re = Constraint::regex("[a-c]x|[b-d]y|e+", "guided_regex");
  ASSERT_TRUE(re.is_ok());
  std::vector<std::string> vocab;
  for (char a : std::string("abcdefxy"))
    for (char b : std::string("abcdefxy")) vocab.push_back(std::string{a, b});
  for (char a : std::string("abcdefxy")) vocab.push_back(std::string(1, a));
  const TokenTrie trie(vocab);
  const TokenMasker masker(trie, **re);
  EXPECT_LT(masker.byte_classes(), 16);
  std::vector<uint8_t> got, want;
  masker.allowed((*re)->start(), got);
  trie.allowed((*re)->start(), want);
  EXPECT_EQ(got, want);
  std::vector<std::string> allowed;
  for (size_t t = 0; t < got.size(); ++t)
    if (got[t]) allowed.push_back(vocab[t]);
  std::sort(allowed.begin(), allowed.end());
  EXPECT_EQ(allowed, (std::vector<std::string>{"a", "ax", "b", "bx", "by", "c", "cx", "cy", "d", "dy", "e", "ee"}));
  // After "b" both branches are open; after "a" or "d" one each: the rows must not mix them.
  for (const char* prefix : {"a", "b", "c", "d", "e", "ee"}) {
    const ConstraintState s = after(**re, prefix);
    masker.allowed(s, got);
    trie.allowed(s, want);
    EXPECT_EQ(got, want) << prefix;
  }
  int64_t states = 0;
  check_walks(trie, **re, masker, 30, 6, 41, &states);
}

TEST(TokenMasker, WalksOnSeveralThreadsShareOneMasker) {
  const TokenTrie trie(small_vocab());
  TokenMasker::Options keep_all;
  keep_all.min_tokens = 1;
  auto c = schema(kSchemas[1]);
  ASSERT_TRUE(c);
  const TokenMasker masker(trie, *c, keep_all);
  std::vector<int64_t> states(4, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] { check_walks(trie, *c, masker, 20, 30, 51 + static_cast<uint32_t>(i), &states[static_cast<size_t>(i)]); });
  for (std::thread& t : threads) t.join();
  for (int64_t n : states) EXPECT_GT(n, 100);
}

}  // namespace
}  // namespace strata::text
