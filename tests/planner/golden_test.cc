// The golden policies in policies/golden/ (written by `strata plan`) must come out again: a change
// to the cost model, the memory accounting or the search that moves them has to update them on
// purpose (rerun the `strata plan` commands in policies/golden/README.md).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "planner/search.h"
#include "planner_test_util.h"
#include "testing/test_data.h"

namespace strata::planner {
namespace {

struct GoldenCase {
  const char* file;
  bool compression_auto;
};

Policy load_golden(const char* file) {
  auto path = strata::testing::test_data_dir() / ".." / ".." / "policies" / "golden" / file;
  std::ifstream in(path);
  STRATA_CHECK(in.good(), "cannot open " + path.string());
  std::stringstream buf;
  buf << in.rdbuf();
  auto p = parse_policy(nlohmann::json::parse(buf.str()), path.string());
  STRATA_CHECK(p.is_ok(), p.status().to_string());
  return *p;
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, ThePlanIsUnchanged) {
  const Policy golden = load_golden(GetParam().file);
  SearchOptions o;
  if (GetParam().compression_auto) {
    o.weight_compression = {Compression::kNone, Compression::kInt4};
    o.kv_compression = {Compression::kNone, Compression::kInt4};
  }
  auto r = plan_policy(testing::spec_of(golden.model), golden.workload, testing::hardware(golden.hardware),
                       golden.budgets, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Policy& p = r->policy;
  EXPECT_EQ(p.batch.gpu_batch_size, golden.batch.gpu_batch_size);
  EXPECT_EQ(p.batch.num_gpu_batches, golden.batch.num_gpu_batches);
  EXPECT_EQ(p.choices.weights, golden.choices.weights);
  EXPECT_EQ(p.choices.kv, golden.choices.kv);
  EXPECT_EQ(p.choices.attention, golden.choices.attention);
  for (int i = 0; i < kNumFracs; ++i) EXPECT_NEAR(p.fractions[i], golden.fractions[i], 1e-4) << i;
  EXPECT_NEAR(p.predicted.tokens_per_s, golden.predicted.tokens_per_s, 1e-4 * golden.predicted.tokens_per_s);
  EXPECT_EQ(p.predicted.bottleneck, golden.predicted.bottleneck);
}

INSTANTIATE_TEST_SUITE_P(Policies, Golden,
                         ::testing::Values(GoldenCase{"opt-30b-t4-flexgen.json", false},
                                           GoldenCase{"opt-175b-t4-flexgen.json", false},
                                           GoldenCase{"llama-3-70b-h100-test-host.json", false},
                                           GoldenCase{"llama-2-70b-l4-int4.json", true}));

}  // namespace
}  // namespace strata::planner
