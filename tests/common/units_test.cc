// parse_bytes / format_bytes: suffixes, decimal and binary units, bad input.

#include "common/units.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

uint64_t parsed(const char* text) {
  auto r = parse_bytes(text);
  EXPECT_TRUE(r.is_ok()) << text << ": " << r.status().to_string();
  return r.is_ok() ? *r : 0;
}

TEST(ParseBytesTest, Units) {
  EXPECT_EQ(parsed("4096"), 4096u);
  EXPECT_EQ(parsed("0"), 0u);
  EXPECT_EQ(parsed("100B"), 100u);
  EXPECT_EQ(parsed("24GiB"), 24 * kGiB);
  EXPECT_EQ(parsed("512MiB"), 512 * kMiB);
  EXPECT_EQ(parsed("2KiB"), 2 * kKiB);
  EXPECT_EQ(parsed("1TiB"), 1024 * kGiB);
  EXPECT_EQ(parsed("512MB"), 512000000u);
  EXPECT_EQ(parsed("3KB"), 3000u);
  EXPECT_EQ(parsed("2GB"), 2000000000u);
  EXPECT_EQ(parsed("1TB"), 1000000000000u);
  EXPECT_EQ(parsed("1.5G"), kGiB + kGiB / 2);  // a bare letter is binary
  EXPECT_EQ(parsed("8M"), 8 * kMiB);
  EXPECT_EQ(parsed("1k"), kKiB);           // case-insensitive
  EXPECT_EQ(parsed("16 gib"), 16 * kGiB);  // space before the suffix
}

TEST(ParseBytesTest, BadInput) {
  for (const char* bad :
       {"", "GiB", "abc", "-1", "-1GiB", "12XB", "1.5 PiB", "inf", "nan", "1e30TB"}) {
    auto r = parse_bytes(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_FALSE(r.status().message().empty());
  }
  // The message quotes the input so a user can find the bad flag.
  EXPECT_NE(parse_bytes("12XB").status().message().find("12XB"), std::string::npos);
}

TEST(FormatBytesTest, Formats) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(kGiB + kGiB / 2), "1.50 GiB");
  EXPECT_EQ(format_bytes(24 * kGiB), "24.00 GiB");
  EXPECT_EQ(format_bytes(3 * 1024 * kGiB), "3.00 TiB");
}

TEST(FormatBytesTest, RoundTripsThroughParse) {
  for (uint64_t v : {uint64_t{1}, kKiB, 3 * kMiB, 24 * kGiB}) {
    std::string s = format_bytes(v);
    s.erase(s.find(' '), 1);  // "24.00GiB"
    EXPECT_EQ(parsed(s.c_str()), v) << s;
  }
}

}  // namespace
}  // namespace strata
