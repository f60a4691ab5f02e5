// Tokenizer behaviour beyond the reference files: errors that name what is unsupported or
// missing, and incremental decoding that never emits half a UTF-8 character.
#include "text/tokenizer.h"

#include <chrono>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "text/incremental_decoder.h"
#include "text/json_util.h"
#include "text/utf8.h"

namespace strata::text {
namespace {

std::unique_ptr<Tokenizer> load(const std::string& name) {
  auto t = Tokenizer::load_dir(testing::test_data_dir() / "tokenizers" / name);
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return t.is_ok() ? std::move(t).value() : nullptr;
}

bool valid_utf8(const std::string& s) { return utf8_lossy(s) == s && s.find("\xEF\xBF\xBD") == std::string::npos; }

// Feeds `text`'s ids one by one after a context; every piece must be whole characters, and all
// pieces together the decode of the whole minus the decode of the context.
void check_incremental(const Tokenizer& tok, const std::string& context, const std::string& text) {
  const auto ctx = tok.encode(context, true);
  auto all = tok.encode(context + text, true);
  ASSERT_GT(all.size(), ctx.size());
  ASSERT_TRUE(std::equal(ctx.begin(), ctx.end(), all.begin()));
  IncrementalDecoder dec(tok, ctx);
  std::string out;
  int held = 0;
  for (size_t i = ctx.size(); i < all.size(); ++i) {
    const std::string piece = dec.push(all[i]);
    EXPECT_TRUE(valid_utf8(piece)) << "piece " << i;
    if (piece.empty()) ++held;
    out += piece;
  }
  out += dec.flush();
  const std::string full = tok.decode(all, true), head = tok.decode(ctx, true);
  ASSERT_EQ(full.compare(0, head.size(), head), 0);
  EXPECT_EQ(out, full.substr(head.size()));
  EXPECT_GT(held, 0) << "the text should have characters split across tokens";
}

TEST(IncrementalDecoder, ByteLevelNeverSplitsACharacter) {
  auto tok = load("gpt2");
  ASSERT_TRUE(tok);
  check_incremental(*tok, "Say:", " 日本語のテキスト 👍🏽 and 👨‍👩‍👧 done");
}

TEST(IncrementalDecoder, ByteFallbackKeepsLeadingSpaces) {
  auto tok = load("llama2");
  ASSERT_TRUE(tok);
  // Metaspace-style decoding strips the first space of a decode; the window must not lose the
  // spaces between generated words, and byte-fallback emoji must come out whole.
  check_incremental(*tok, "Hello", " big world 𝔘𝔫𝔦 🤖 end");
}

TEST(Utf8, CompletePrefixAndLossy) {
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(complete_utf8_prefix("a" + euro.substr(0, 2)), 1u);
  EXPECT_EQ(complete_utf8_prefix("a" + euro), 4u);
  EXPECT_EQ(utf8_lossy("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");  // one U+FFFD for the broken sequence
  EXPECT_EQ(utf8_lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(python_strip("\xE3\x80\x80 x\t\n"), "x");  // U+3000 is whitespace to Python
}

TEST(Tokenizer, SpecialTokensAndIds) {
  auto tok = load("llama2");
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->bos_id(), 1);
  ASSERT_EQ(tok->eos_ids().size(), 1u);
  EXPECT_EQ(tok->eos_ids()[0], 2);
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(100));
  EXPECT_EQ(tok->token_to_id("<0x0A>"), 13);  // after <unk>, <s>, </s>
  EXPECT_EQ(tok->id_to_token(13), "<0x0A>");
}

nlohmann::json minimal_bpe() {
  return nlohmann::json::parse(R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "added_tokens": [], "normalizer": null, "pre_tokenizer": null, "decoder": null, "post_processor": null})");
}

TEST(Tokenizer, MinimalBpeMerges) {
  auto t = Tokenizer::from_json(minimal_bpe(), nlohmann::json::object(), "test.json");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ((*t)->encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ((*t)->encode("aab"), (std::vector<int32_t>{0, 2}));
  EXPECT_EQ((*t)->encode("axb"), (std::vector<int32_t>{2}));  // no unk, no fallback: x is dropped
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  struct Case {
    const char* field;
    const char* value;
    const char* expect;
  };
  const Case cases[] = {
      {"normalizer", R"({"type": "BertNormalizer"})", "normalizer type 'BertNormalizer'"},
      {"pre_tokenizer", R"({"type": "Punctuation"})", "pre-tokenizer type 'Punctuation'"},
      {"decoder", R"({"type": "WordPiece"})", "decoder type 'WordPiece'"},
      {"post_processor", R"({"type": "Weird"})", "post-processor type 'Weird'"},
      {"model", R"({"type": "Unigram", "vocab": []})", "model type 'Unigram'"},
      {"pre_tokenizer", R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})",
       "does not compile"},
  };
  for (const auto& c : cases) {
    auto j = minimal_bpe();
    j[c.field] = nlohmann::json::parse(c.value);
    auto t = Tokenizer::from_json(j, nlohmann::json::object(), "dir/tokenizer.json");
    ASSERT_FALSE(t.is_ok()) << c.field;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << t.status().message();
    EXPECT_NE(t.status().message().find("dir/tokenizer.json"), std::string::npos) << t.status().message();
  }
  auto j = minimal_bpe();
  j["model"]["merges"] = {"a c"};
  auto t = Tokenizer::from_json(j, nlohmann::json::object(), "x.json");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("merge 0"), std::string::npos) << t.status().message();
}

TEST(Tokenizer, HostileIdsAreErrorsBeforeAnyTableIsSized) {
  struct Case {
    const char* path;  // JSON pointer of the value replaced
    nlohmann::json value;
    const char* expect;
  };
  const Case cases[] = {
      {"/model/vocab/ab", 2147483647, "vocab id 2147483647 of 'ab' is far beyond"},
      {"/model/vocab/ab", 99999999, "99999999"},
      {"/model/vocab/ab", 1e300, "non-negative integer id"},
      {"/model/vocab/ab", uint64_t{18446744073709551615u}, "non-negative integer id"},
      {"/added_tokens", nlohmann::json::array({{{"id", 2147483647}, {"content", "<x>"}}}), "'id' must be"},
      {"/post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
        {"special_tokens", {{"<s>", {{"ids", {4294967296LL}}}}}}},
       "must be token ids"},
      {"/post_processor", {{"type", "RobertaProcessing"}, {"cls", {"<s>", -5}}, {"sep", {"</s>", 2}}}, "'cls'"},
      // Found by the fuzzer: an id the post-processor adds that the tokenizer does not know.
      {"/post_processor", {{"type", "RobertaProcessing"}, {"cls", {"<s>", 9}}, {"sep", {"</s>", 2}}},
       "token id 9 is neither in the vocabulary nor an added token"},
  };
  for (const auto& c : cases) {
    auto j = minimal_bpe();
    j[nlohmann::json::json_pointer(c.path)] = c.value;
    const auto t0 = std::chrono::steady_clock::now();
    auto t = Tokenizer::from_json(j, nlohmann::json::object(), "dir/tokenizer.json");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1)) << c.path;
    ASSERT_FALSE(t.is_ok()) << c.path;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << t.status().message();
    EXPECT_NE(t.status().message().find("dir/tokenizer.json"), std::string::npos) << t.status().message();
  }
}

TEST(Tokenizer, HostileFilesAreClearErrors) {
  auto dir = testing::make_temp_dir("strata-tok");
  // A number past a double: an error naming the file and the field.
  std::string text = minimal_bpe().dump();
  text.insert(1, R"("version": 1e400, )");
  std::ofstream(dir / "tokenizer.json") << text;
  auto t = Tokenizer::load_dir(dir);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos) << t.status().message();
  EXPECT_NE(t.status().message().find("'version'"), std::string::npos) << t.status().message();
  // generation_config.json ids out of range.
  std::ofstream(dir / "tokenizer.json", std::ios::trunc) << minimal_bpe().dump();
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 4294967296]})";
  t = Tokenizer::load_dir(dir);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("generation_config.json: field 'eos_token_id'"), std::string::npos)
      << t.status().message();
  std::filesystem::remove(dir / "generation_config.json");
  // A FIFO is refused at once.
  std::filesystem::remove(dir / "tokenizer.json");
  ASSERT_EQ(::mkfifo((dir / "tokenizer.json").c_str(), 0644), 0);
  const auto t0 = std::chrono::steady_clock::now();
  t = Tokenizer::load_dir(dir);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("FIFO"), std::string::npos) << t.status().message();
  std::filesystem::remove_all(dir);
}

TEST(Tokenizer, MissingTokenizerJsonIsAClearError) {
  auto dir = testing::make_temp_dir("strata-tok");
  auto t = Tokenizer::load_dir(dir);
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_NE(t.status().message().find("tokenizer.json"), std::string::npos);
}

TEST(Tokenizer, FixtureModelTokenizerLoadsChatTemplateAndEos) {
  auto t = Tokenizer::load_dir(testing::test_data_dir() / "fixtures" / "llama_text");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_NE((*t)->chat_template().find("<|start_header_id|>"), std::string::npos);  // chat_template.jinja
  EXPECT_EQ((*t)->eos_ids(), (std::vector<int32_t>{1, 4}));                        // generation_config.json
  EXPECT_EQ((*t)->bos_token(), "<|begin_of_text|>");
}

}  // namespace
}  // namespace strata::text
