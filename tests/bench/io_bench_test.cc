// The io benchmark on a small file: every point is measured, over the whole file when the time
// cap allows, and printed as JSON and a table.
#include "bench/drivers/io_bench.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/test_data.h"

namespace strata::bench {
namespace {

TEST(IoBench, MeasuresEveryPointOverTheWholeFile) {
  const auto dir = testing::make_temp_dir("strata-bench");
  IoBenchOptions o;
  o.dir = dir;
  o.file_bytes = 8 << 20;
  o.depths = {1, 4};
  o.block_sizes = {256 << 10, 1 << 20};
  o.fallback_depths = {2};
  o.repetitions = 2;
  o.max_seconds_per_rep = 30;
  Logger log(LogLevel::kQuiet);
  int seen = 0;
  auto r = run_io_bench(o, log, [&](const IoBenchResult&) { ++seen; });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  // write + io_uring (2 depths x 2 blocks, unless io_uring is refused) + threads + pread.
  ASSERT_TRUE(r->size() == 7u || r->size() == 3u) << r->size();
  EXPECT_EQ(seen, static_cast<int>(r->size()));
  EXPECT_EQ(r->front().op, "write");
  for (const IoBenchResult& p : *r) {
    EXPECT_EQ(p.bytes_per_rep, 8u << 20) << p.backend;
    EXPECT_GT(p.min, 0.0);
    EXPECT_LE(p.min, p.median);
    EXPECT_LE(p.median, p.max);
    auto j = nlohmann::json::parse(io_bench_json(p));
    EXPECT_EQ(j["backend"], p.backend);
    EXPECT_EQ(j["block_bytes"], p.block_bytes);
  }
  EXPECT_EQ(r->back().backend, "pread");
  const std::string table = io_bench_table(*r);
  EXPECT_NE(table.find("| pread | read | 1 | 1.00 MiB |"), std::string::npos) << table;
  // The test file is removed afterwards.
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

TEST(IoBench, RefusesWhatItCannotDo) {
  Logger log(LogLevel::kQuiet);
  IoBenchOptions o;
  o.dir = "/nonexistent/strata";
  EXPECT_EQ(run_io_bench(o, log).status().code(), StatusCode::kNotFound);
  o.dir = std::filesystem::temp_directory_path();
  o.file_bytes = uint64_t{1} << 60;  // more than any disk has free
  EXPECT_EQ(run_io_bench(o, log).status().code(), StatusCode::kInvalidArgument);
  o.file_bytes = 1 << 20;
  o.block_sizes = {1000};
  EXPECT_EQ(run_io_bench(o, log).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::bench
