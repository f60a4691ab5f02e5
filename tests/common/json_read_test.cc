// The checked JSON path: numbers out of range, nesting, size limits and non-regular files are
// errors that name the source and the field, never exceptions, aborts or hangs.
#include "common/json_read.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("strata-json-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void expect_error(const Result<nlohmann::json>& r, std::initializer_list<std::string> fragments) {
  ASSERT_FALSE(r.is_ok());
  for (const auto& f : fragments) EXPECT_NE(r.status().message().find(f), std::string::npos) << r.status().message();
}

TEST(JsonRead, ParsesValidText) {
  auto r = parse_json(R"({"a": [1, 2.5, "x", null, true], "b": {"c": -3}})", "t.json");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)["a"][1].get<double>(), 2.5);
  EXPECT_EQ((*r)["b"]["c"].get<int64_t>(), -3);
  EXPECT_EQ(r->dump(), nlohmann::json::parse(R"({"a": [1, 2.5, "x", null, true], "b": {"c": -3}})").dump());
}

TEST(JsonRead, NumberOverflowNamesTheField) {
  expect_error(parse_json(R"({"num_hidden_layers": 1e400})", "config.json"),
               {"config.json", "field 'num_hidden_layers'", "1e400", "out of range"});
  expect_error(parse_json(R"({"a": {"b": [1, 2, -1e999]}})", "x.json"), {"field 'a.b[2]'", "-1e999"});
  expect_error(parse_json("1e400", "top.json"), {"top.json", "out of range"});
  // Integers past uint64 become doubles, which is fine; past double they are an error.
  EXPECT_TRUE(parse_json("[184467440737095516150]", "big").is_ok());
}

TEST(JsonRead, SyntaxErrorsAndLimits) {
  expect_error(parse_json(R"({"a": )", "cut.json"), {"cut.json", "not valid JSON"});
  expect_error(parse_json("", "empty.json"), {"empty.json"});
  std::string deep(200, '[');
  expect_error(parse_json(deep + std::string(200, ']'), "deep.json"), {"deep.json", "deeper than 128"});
  EXPECT_TRUE(parse_json(std::string(100, '[') + std::string(100, ']'), "ok").is_ok());
  expect_error(parse_json(R"({"a": "0123456789"})", "big.json", JsonLimits{.max_bytes = 8}), {"big.json", "limit"});
  // Deeply nested text far past any limit is refused without recursion.
  std::string very_deep(1 << 20, '[');
  expect_error(parse_json(very_deep, "d"), {"deeper"});
}

TEST(JsonRead, IntegerConversions) {
  using nlohmann::json;
  EXPECT_EQ(json_to_int64(json(7)), 7);
  EXPECT_EQ(json_to_int64(json(7.0)), 7);
  EXPECT_EQ(json_to_int64(json(-7)), -7);
  EXPECT_FALSE(json_to_int64(json(7.5)));
  EXPECT_FALSE(json_to_int64(json(1e300)));
  EXPECT_FALSE(json_to_int64(json(9223372036854775808.0)));
  EXPECT_FALSE(json_to_int64(json(uint64_t{18446744073709551615u})));
  EXPECT_FALSE(json_to_int64(json("7")));
  json obj = {{"n", 1e30}, {"s", "x"}, {"k", 5}};
  auto n = json_int_in(obj, "n", 0, 100, "cfg");
  ASSERT_FALSE(n.is_ok());
  EXPECT_NE(n.status().message().find("cfg: field 'n' must be an integer in [0, 100]"), std::string::npos)
      << n.status().message();
  EXPECT_EQ(*json_int_in_or(obj, "absent", 0, 100, 9, "cfg"), 9);
  EXPECT_FALSE(json_int_in(obj, "k", 6, 100, "cfg").is_ok());
  EXPECT_FALSE(json_number_in_or(obj, "n", 0, 1e6, 1, "cfg").is_ok());
  EXPECT_FALSE(json_string(obj, "k", "cfg").is_ok());
  EXPECT_FALSE(json_uint(json{{"u", -1}}, "u", "cfg").is_ok());
}

TEST(JsonRead, OnlyRegularFilesAreRead) {
  const fs::path dir = temp_dir();
  const fs::path fifo = dir / "config.json";
  fs::remove(fifo);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = read_json_file(fifo);  // must not wait for a writer
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  expect_error(r, {fifo.string(), "FIFO", "not a regular file"});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  expect_error(read_json_file(dir), {"a directory"});
  expect_error(read_json_file("/dev/zero"), {"/dev/zero", "character device"});
  auto missing = read_json_file(dir / "absent.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  const fs::path big = dir / "big.json";
  std::ofstream(big) << "[" << std::string(100, ' ') << "]";
  expect_error(read_json_file(big, JsonLimits{.max_bytes = 50}), {big.string(), "over the limit"});
  EXPECT_TRUE(read_json_file(big).is_ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
