#include "text/token_ids.h"

#include <gtest/gtest.h>

namespace strata::text {
namespace {

TEST(TokenIds, ParsesCommasSpacesAndBrackets) {
  EXPECT_EQ(*parse_token_ids("1 2 3"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*parse_token_ids(" 1,2 ,  3 "), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*parse_token_ids("[7, 8]"), (std::vector<int32_t>{7, 8}));
  EXPECT_TRUE(parse_token_ids("")->empty());
  EXPECT_EQ(format_token_ids({4, 5, 6}), "4 5 6");
}

TEST(TokenIds, ErrorsNameTheEntry) {
  auto bad = parse_token_ids("1 two 3");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("entry 2 ('two')"), std::string::npos);
  auto neg = parse_token_ids("-1");
  EXPECT_FALSE(neg.is_ok());
  auto big = parse_token_ids("5 300", 256);
  ASSERT_FALSE(big.is_ok());
  EXPECT_NE(big.status().message().find("outside the vocabulary of 256"), std::string::npos);
  EXPECT_FALSE(parse_token_ids("[1, 2").is_ok());
  EXPECT_FALSE(parse_token_ids("[1] 2").is_ok());
}

}  // namespace
}  // namespace strata::text
