// The offloading benchmark's arithmetic and output (FlexGen's metric, the prefill/decode split,
// measured over predicted) on a hand-made result whose every figure is worked out below, and the
// seeded block of prompts it runs. The engine run itself needs a GPU (tests/offload/engine_test.cc).
#include "bench/drivers/offload_bench.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/units.h"

namespace strata::bench {
namespace {

// 4 x 2 = 8 sequences of 16 prompt + 4 generated tokens: 128 prompt tokens, 32 generated, of
// which 8 come from the prefill and 24 from 3 decode steps.
OffloadBenchResult hand_made() {
  OffloadBenchResult r;
  r.model = "opt-30b";
  r.device = "cuda:0 (NVIDIA H100 80GB HBM3)";
  r.workload = {16, 4, 0};
  r.batch = {4, 2};
  r.sequences = 8;
  r.prompt_tokens = 128;
  r.generated_tokens = 32;
  r.decode_steps = 3;
  r.prefill_s = 0.5;
  r.decode_s = 1.5;
  r.resources = {{"gpu", 1.0, 0.5, 0}, {"h2d", 1.8, 0.9, 3 * kGiB}};
  r.peak_gpu_bytes = 2 * kGiB;
  r.pinned_bytes = 60 * kGiB;
  r.peak_rss_bytes = 70 * kGiB;
  r.disk_bytes = 0;
  r.predicted.tokens_per_s = 20;
  r.predicted.prefill_s = 0.4;
  r.predicted.decode_step_s = 0.25;
  r.predicted.bottleneck = "h2d";
  return r;
}

TEST(OffloadBench, MetricsFollowFlexGensDefinitions) {
  const OffloadBenchResult r = hand_made();
  EXPECT_DOUBLE_EQ(r.tokens_per_s(), 16.0);           // 32 / (0.5 + 1.5)
  EXPECT_DOUBLE_EQ(r.prefill_tokens_per_s(), 256.0);  // 128 / 0.5
  EXPECT_DOUBLE_EQ(r.decode_tokens_per_s(), 16.0);    // (32 - 8) / 1.5
  EXPECT_DOUBLE_EQ(r.decode_step_s(), 0.5);           // 1.5 / 3
  OffloadBenchResult empty;
  EXPECT_EQ(empty.tokens_per_s(), 0);
  EXPECT_EQ(empty.decode_step_s(), 0);
}

TEST(OffloadBench, JsonHasMeasuredPredictedAndTheirRatio) {
  const nlohmann::json j = offload_bench_json(hand_made());
  EXPECT_EQ(j["model"], "opt-30b");
  EXPECT_EQ(j["sequences"], 8);
  EXPECT_EQ(j["gpu_batch_size"], 4);
  EXPECT_EQ(j["num_gpu_batches"], 2);
  EXPECT_DOUBLE_EQ(j["measured"]["tokens_per_s"].get<double>(), 16.0);
  EXPECT_DOUBLE_EQ(j["measured"]["decode_step_s"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["predicted"]["prefill_tokens_per_s"].get<double>(), 320.0);  // 8 * 16 / 0.4
  EXPECT_DOUBLE_EQ(j["predicted"]["decode_tokens_per_s"].get<double>(), 32.0);    // 8 / 0.25
  EXPECT_EQ(j["predicted"]["bottleneck"], "h2d");
  EXPECT_DOUBLE_EQ(j["measured_over_predicted"]["tokens_per_s"].get<double>(), 0.8);   // 16 / 20
  EXPECT_DOUBLE_EQ(j["measured_over_predicted"]["prefill_s"].get<double>(), 1.25);     // 0.5 / 0.4
  EXPECT_DOUBLE_EQ(j["measured_over_predicted"]["decode_step_s"].get<double>(), 2.0);  // 0.5 / 0.25
  ASSERT_EQ(j["resources"].size(), 2u);
  EXPECT_EQ(j["resources"][1]["name"], "h2d");
  EXPECT_EQ(j["resources"][1]["bytes"].get<uint64_t>(), 3 * kGiB);
  EXPECT_DOUBLE_EQ(j["resources"][1]["busy_fraction"].get<double>(), 0.9);
  EXPECT_EQ(j["memory_bytes"]["pinned"].get<uint64_t>(), 60 * kGiB);
  // Without a prediction the ratios are null, not a division by zero.
  OffloadBenchResult r = hand_made();
  r.predicted = {};
  const nlohmann::json k = offload_bench_json(r);
  EXPECT_TRUE(k["measured_over_predicted"]["tokens_per_s"].is_null());
}

TEST(OffloadBench, TableIsAligned) {
  const std::string table = format_offload_bench(hand_made());
  std::istringstream in(table);
  std::string line;
  std::vector<std::string> metric_rows;
  for (const char* name :
       {"throughput tok/s", "prefill s", "decode step s", "prefill tok/s", "decode tok/s"}) {
    const size_t at = table.find(std::string("\n") + name + " ");
    ASSERT_NE(at, std::string::npos) << name << " missing from\n" << table;
    metric_rows.push_back(table.substr(at + 1, table.find('\n', at + 1) - at - 1));
  }
  for (const auto& row : metric_rows) EXPECT_EQ(row.size(), metric_rows[0].size()) << row;
  EXPECT_NE(metric_rows[0].find("16.0000"), std::string::npos) << metric_rows[0];
  EXPECT_NE(metric_rows[0].find("20.0000"), std::string::npos);
  EXPECT_NE(metric_rows[0].find("0.800"), std::string::npos);
  EXPECT_NE(metric_rows[2].find("2.000"), std::string::npos)
      << metric_rows[2];  // decode step ratio
  EXPECT_NE(table.find("4 x 2 = 8 sequences"), std::string::npos);
  EXPECT_NE(table.find("h2d"), std::string::npos);
  EXPECT_NE(table.find("90.0%"), std::string::npos);
  EXPECT_NE(table.find("pinned 60.00 GiB"), std::string::npos) << table;
  // Without a prediction the columns hold dashes and stay aligned.
  OffloadBenchResult r = hand_made();
  r.predicted = {};
  const std::string bare = format_offload_bench(r);
  const size_t at = bare.find("\nthroughput tok/s ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_EQ(bare.substr(at + 1, bare.find('\n', at + 1) - at - 1).size(), metric_rows[0].size());
}

TEST(OffloadBench, RequestsAreSeededPromptsOfExactLength) {
  const planner::Workload w{10, 5, 0};
  const auto a = bench_requests(3, w, 50, 7);
  ASSERT_EQ(a.size(), 3u);
  std::set<int32_t> seen;
  for (const auto& r : a) {
    ASSERT_EQ(r.prompt.size(), 10u);
    EXPECT_EQ(r.max_new_tokens, 5);
    EXPECT_TRUE(r.ignore_eos);
    EXPECT_TRUE(r.sampling.greedy());
    for (int32_t t : r.prompt) {
      EXPECT_GE(t, 4);
      EXPECT_LT(t, 50);
      seen.insert(t);
    }
  }
  EXPECT_GT(seen.size(), 10u);  // 30 draws from 46 ids are not all alike
  const auto again = bench_requests(3, w, 50, 7);
  const auto other = bench_requests(3, w, 50, 8);
  EXPECT_EQ(a[2].prompt, again[2].prompt);
  EXPECT_NE(a[0].prompt, other[0].prompt);
}

}  // namespace
}  // namespace strata::bench
