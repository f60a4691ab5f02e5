// Plain and zstd JSONL streams: round trips, and repair of a torn last record.
#include "text/line_io.h"

#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include <zstd.h>

#include "testing/test_data.h"

namespace strata::text {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  auto r = LineReader::open(path);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  std::vector<std::string> out;
  std::string line;
  while (r.is_ok()) {
    auto more = (*r)->next(line);
    EXPECT_TRUE(more.is_ok()) << more.status().to_string();
    if (!more.is_ok() || !*more) break;
    out.push_back(line);
  }
  return out;
}

void append_raw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::app);
  f << bytes;
}

class LineIo : public ::testing::TestWithParam<const char*> {};

TEST_P(LineIo, RoundTripAndTornTail) {
  const std::string path = (testing::make_temp_dir("strata-lineio") / ("out.jsonl" + std::string(GetParam()))).string();
  const std::vector<std::string> records = {R"({"a":1})", R"({"b":"日本"})", std::string(5000, 'x')};
  {
    auto w = RecordWriter::open(path);
    ASSERT_TRUE(w.is_ok());
    for (const auto& r : records) ASSERT_TRUE((*w)->append(r).is_ok());
  }
  EXPECT_EQ(read_lines(path), records);
  // A torn record: half a line, or half a zstd frame.
  std::string torn = "{\"c\": 3, \"unfinished";
  if (is_zstd_path(path)) {
    std::string frame(ZSTD_compressBound(100), '\0');
    const std::string content = "{\"c\":3}\n";
    frame.resize(ZSTD_compress(frame.data(), frame.size(), content.data(), content.size(), 3));
    torn = frame.substr(0, frame.size() / 2);
  }
  append_raw(path, torn);
  std::vector<std::string> seen;
  auto rep = repair_records(path, [&](std::string_view r) { seen.emplace_back(r); });
  ASSERT_TRUE(rep.is_ok()) << rep.status().to_string();
  EXPECT_EQ(seen, records);
  EXPECT_EQ(rep->truncated_bytes, torn.size());
  // After the repair the file appends cleanly.
  {
    auto w = RecordWriter::open(path);
    ASSERT_TRUE(w.is_ok());
    ASSERT_TRUE((*w)->append("{\"d\":4}").is_ok());
  }
  auto expect = records;
  expect.push_back("{\"d\":4}");
  EXPECT_EQ(read_lines(path), expect);
}

TEST_P(LineIo, ScanLeavesTheFileAndRewriteReplacesItWhole) {
  const auto dir = testing::make_temp_dir("strata-lineio");
  const std::string path = (dir / ("out.jsonl" + std::string(GetParam()))).string();
  const std::vector<std::string> records = {R"({"a":1})", R"({"b":2})", R"({"c":3})"};
  {
    auto w = RecordWriter::open(path);
    ASSERT_TRUE(w.is_ok());
    for (const auto& r : records) ASSERT_TRUE((*w)->append(r).is_ok());
  }
  append_raw(path, is_zstd_path(path) ? std::string("\x28\xb5\x2f\xfd\x20") : std::string("{\"d\""));
  const auto before = std::filesystem::file_size(path);
  auto scan = scan_records(path);
  ASSERT_TRUE(scan.is_ok()) << scan.status().to_string();
  EXPECT_EQ(scan->records, records);
  EXPECT_EQ(scan->file_bytes, before);
  EXPECT_LT(scan->intact_bytes, scan->file_bytes);
  EXPECT_FALSE(scan->foreign_tail);
  EXPECT_EQ(std::filesystem::file_size(path), before) << "scan_records must not change the file";
  // rewrite_records: the new contents whole, the torn tail gone, no temporary file left behind.
  ASSERT_TRUE(rewrite_records(path, {records[0], records[2]}).is_ok());
  EXPECT_EQ(read_lines(path), (std::vector<std::string>{records[0], records[2]}));
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

INSTANTIATE_TEST_SUITE_P(PlainAndZstd, LineIo, ::testing::Values("", ".zst"));

TEST(LineIoErrors, AForeignZstdFileIsToldApart) {
  const auto dir = testing::make_temp_dir("strata-lineio");
  const std::string path = (dir / "notes.jsonl.zst").string();
  append_raw(path, "plain text, not zstd\n");
  auto scan = scan_records(path);
  ASSERT_TRUE(scan.is_ok());
  EXPECT_TRUE(scan->records.empty());
  EXPECT_TRUE(scan->foreign_tail);
  // write_file_atomically replaces a file whole.
  const std::string f = (dir / "job.json").string();
  ASSERT_TRUE(write_file_atomically(f, "one").is_ok());
  ASSERT_TRUE(write_file_atomically(f, "two").is_ok());
  std::ifstream in(f);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "two");
  EXPECT_FALSE(write_file_atomically((dir / "no-dir" / "x").string(), "x").is_ok());
}

TEST(LineIoErrors, MissingAndTruncatedInputs) {
  auto missing = LineReader::open("/nonexistent/dir/in.jsonl");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/in.jsonl"), std::string::npos);
  // A .zst input cut inside a frame is an error, not a silently shorter input.
  const std::string path = (testing::make_temp_dir("strata-lineio") / "in.jsonl.zst").string();
  const std::string content = std::string(2000, 'y') + "\n";
  std::string frame(ZSTD_compressBound(content.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), content.data(), content.size(), 3));
  append_raw(path, frame.substr(0, frame.size() - 5));
  auto r = LineReader::open(path);
  ASSERT_TRUE(r.is_ok());
  std::string line;
  Result<bool> more = true;
  for (int i = 0; i < 3 && more.is_ok() && *more; ++i) more = (*r)->next(line);
  ASSERT_FALSE(more.is_ok());
  EXPECT_NE(more.status().message().find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace strata::text
