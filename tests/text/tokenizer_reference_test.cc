// The tokenizer against the `tokenizers` package: every case of tests/data/tokenizers/<name>/
// reference.json (made by make_tokenizer_refs.py) must encode and decode exactly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing/test_data.h"
#include "text/json_util.h"
#include "text/normalizer.h"
#include "text/tokenizer.h"

namespace strata::text {
namespace {

std::vector<int32_t> ids_of(const nlohmann::json& a) { return a.get<std::vector<int32_t>>(); }

void check_reference(const std::string& name, const std::string& tokenizer_dir) {
  const auto dir = testing::test_data_dir() / "tokenizers" / name;
  auto tok = Tokenizer::load_dir(tokenizer_dir.empty() ? dir : testing::test_data_dir() / tokenizer_dir);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  auto ref = read_json_file((dir / "reference.json").string());
  ASSERT_TRUE(ref.is_ok()) << ref.status().to_string();
  int checked = 0;
  for (const auto& c : (*ref)["cases"]) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(name + ": " + nlohmann::json(text).dump());
    EXPECT_EQ((*tok)->encode(text, true), ids_of(c["ids"]));
    EXPECT_EQ((*tok)->encode(text, false), ids_of(c["ids_no_special"]));
    const auto ids = ids_of(c["ids"]);
    EXPECT_EQ((*tok)->decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ((*tok)->decode(ids, true), c["decoded_skip_special"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 25);
}

TEST(TokenizerReference, Gpt2ByteLevel) { check_reference("gpt2", ""); }
TEST(TokenizerReference, Llama2ByteFallback) { check_reference("llama2", ""); }
TEST(TokenizerReference, MetaspaceNfkc) {
  if (!have_unicode_normalization()) GTEST_SKIP() << "built without ICU: NFKC is unsupported";
  check_reference("metaspace_nfkc", "");
}

}  // namespace
}  // namespace strata::text
