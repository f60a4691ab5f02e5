// The budgets, hardware and policy-file rules `strata generate` and `strata bench` use before the
// offloading engine starts, checked against hand-computed values and real catalogue entries.
#include "offload_setup.h"
#include "profile_cache.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/units.h"
#include "model/shapes.h"
#include "planner/model_spec.h"
#include "testing/test_data.h"

namespace strata::tools {
namespace {

using planner::Compression;

TEST(OffloadSetup, DetectionRulesLeaveTheDocumentedMargins) {
  // GPU: free - 1 GiB.
  EXPECT_EQ(gpu_budget_from_free(10 * kGiB), 9663676416ull);
  EXPECT_EQ(gpu_budget_from_free(512 * kMiB), 0u);
  // DRAM: available - 10%: 100 GiB -> 90 GiB; 1001 B -> 1001 - 100 (integer tenth).
  EXPECT_EQ(cpu_budget_from_available(100 * kGiB), 96636764160ull);
  EXPECT_EQ(cpu_budget_from_available(1001), 901u);
  // Disk: 95% of the free space.
  EXPECT_EQ(disk_budget_from_free(1000000000000ull), 950000000000ull);
  EXPECT_EQ(disk_budget_from_free(0), 0u);
}

TEST(OffloadSetup, MeminfoAvailableIsReadInKibibytes) {
  const std::string meminfo =
      "MemTotal:       131072000 kB\n"
      "MemFree:          1000000 kB\n"
      "MemAvailable:   120000000 kB\n"
      "Buffers:           123456 kB\n";
  auto bytes = meminfo_available_bytes(meminfo, "meminfo");
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  EXPECT_EQ(*bytes, 122880000000ull);  // 120000000 * 1024

  auto missing = meminfo_available_bytes("MemTotal: 1 kB\nMemFree: 1 kB\n", "/proc/meminfo");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("/proc/meminfo"), std::string::npos);
  EXPECT_NE(missing.status().message().find("--cpu-mem"), std::string::npos);

  auto garbled = meminfo_available_bytes("MemAvailable: lots\n", "/proc/meminfo");
  ASSERT_FALSE(garbled.is_ok());
  EXPECT_EQ(garbled.status().code(), StatusCode::kCorrupt);
  auto wrong_unit = meminfo_available_bytes("MemAvailable: 12 MB\n", "m");
  EXPECT_FALSE(wrong_unit.is_ok());
}

TEST(OffloadSetup, BudgetFlagsReplaceOnlyTheTiersTheyName) {
  planner::Budgets b{1, 2, 3};
  ASSERT_TRUE(apply_budget_flags({"14GiB", "", "2TB"}, &b).is_ok());
  EXPECT_EQ(b.gpu, 15032385536ull);  // 14 * 2^30
  EXPECT_EQ(b.cpu, 2u);
  EXPECT_EQ(b.disk, 2000000000000ull);

  const Status bad = apply_budget_flags({"", "plenty", ""}, &b);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("--cpu-mem"), std::string::npos) << bad.message();
  EXPECT_EQ(b.cpu, 2u);
}

TEST(OffloadSetup, ResolveBudgetsUsesTheFlagsAndMeasuresTheDisk) {
  const auto dir = testing::make_temp_dir("strata-offload-setup") / "offload";
  // Every tier given: no GPU needed, the directory is still created for the disk tier only when
  // it is detected, so give disk too and expect the flags back exactly.
  auto given = resolve_budgets({"1GiB", "2GiB", "3GiB"}, 0, dir);
  ASSERT_TRUE(given.is_ok()) << given.status().to_string();
  EXPECT_EQ(given->gpu, kGiB);
  EXPECT_EQ(given->cpu, 2 * kGiB);
  EXPECT_EQ(given->disk, 3 * kGiB);
  // Disk and DRAM detected: the directory exists afterwards and both are above zero.
  auto detected = resolve_budgets({"1GiB", "", ""}, 0, dir);
  ASSERT_TRUE(detected.is_ok()) << detected.status().to_string();
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_GT(detected->cpu, 0u);
  EXPECT_GT(detected->disk, 0u);
  EXPECT_EQ(default_offload_dir().filename(), "strata-offload");
}

// Without --hardware a run plans with this machine's cached profile (here one stored by hand in a
// test cache); with it, the file or catalogue entry it names.
TEST(OffloadSetup, HardwareIsTheFlagsOrThisMachinesCachedProfile) {
  const auto dir = testing::make_temp_dir("strata-machine-hardware");
  ::setenv("STRATA_CACHE_DIR", (dir / "cache").c_str(), 1);
  Logger log(LogLevel::kWarn);
  auto key = machine_key(dir, 0);
  ASSERT_TRUE(key.is_ok()) << key.status().to_string();
  planner::HardwareProfile mine = planner::catalogue_hardware("h100-test-host").value();
  mine.name = "this machine";
  ASSERT_TRUE(store_cached_profile(*key, mine).is_ok());
  auto got = machine_hardware("", 0, dir, log, /*quiet=*/true);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->name, "this machine");

  auto by_name = machine_hardware("t4-flexgen", 0, dir, log, true);
  ASSERT_TRUE(by_name.is_ok());
  EXPECT_EQ(by_name->gpu.memory_bytes, 15 * kGiB);  // policies/hardware/t4-flexgen.json: 15 GiB
  auto unknown = machine_hardware("no-such-card", 0, dir, log, true);
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("no-such-card"), std::string::npos);
  ::unsetenv("STRATA_CACHE_DIR");
}

TEST(OffloadSetup, CompressChoices) {
  planner::SearchOptions o;
  ASSERT_TRUE(set_compress_choices("int4", &o).is_ok());
  EXPECT_EQ(o.weight_compression, std::vector{Compression::kInt4});
  EXPECT_EQ(o.kv_compression, std::vector{Compression::kInt4});
  ASSERT_TRUE(set_compress_choices("auto", &o).is_ok());
  EXPECT_EQ(o.weight_compression, (std::vector{Compression::kNone, Compression::kInt4}));
  ASSERT_TRUE(set_compress_choices("none", &o).is_ok());
  EXPECT_EQ(o.kv_compression, std::vector{Compression::kNone});
  const Status bad = set_compress_choices("fp8", &o);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("--compress"), std::string::npos);
}

class PolicyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::make_temp_dir("strata-policy-file");
    auto cfg = model::named_shape("opt-125m");
    ASSERT_TRUE(cfg.is_ok());
    spec_ = planner::make_model_spec(*cfg, "opt-125m").value();
    hw_ = *planner::catalogue_hardware("h100-test-host");
    budgets_ = planner::default_budgets(hw_);
  }
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  std::filesystem::path dir_;
  planner::ModelSpec spec_;
  planner::HardwareProfile hw_;
  planner::Budgets budgets_;
};

TEST_F(PolicyFileTest, APlannedPolicyReadsBackWithTheSamePrediction) {
  auto plan = planner::plan_policy(spec_, {64, 16, 0}, hw_, budgets_, {});
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  const std::string file = write("good.json", planner::policy_to_json(plan->policy).dump(2));
  auto back = load_policy_file(file, spec_, hw_, budgets_, {});
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->policy.batch.block(), plan->policy.batch.block());
  EXPECT_NEAR(back->policy.predicted.tokens_per_s, plan->policy.predicted.tokens_per_s,
              1e-6 * plan->policy.predicted.tokens_per_s);
  // A workload given replaces the file's: a shorter prompt (whose KV fits wherever the planned
  // one did) takes less time to prefill.
  auto shorter = load_policy_file(file, spec_, hw_, budgets_, {32, 16, 0});
  ASSERT_TRUE(shorter.is_ok()) << shorter.status().to_string();
  EXPECT_EQ(shorter->policy.workload.prompt_len, 32);
  EXPECT_LT(shorter->policy.predicted.prefill_s, back->policy.predicted.prefill_s);
}

TEST_F(PolicyFileTest, BadFilesNameTheFile) {
  auto missing = load_policy_file(dir_ / "absent.json", spec_, hw_, budgets_, {});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("absent.json"), std::string::npos);

  const std::string garbled = write("garbled.json", "{\"gpu_batch_size\": 4,");
  auto g = load_policy_file(garbled, spec_, hw_, budgets_, {});
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().message().find(garbled), std::string::npos) << g.status().to_string();
  EXPECT_NE(g.status().message().find("not valid JSON"), std::string::npos);

  const std::string incomplete =
      write("incomplete.json", R"({"model": "opt-125m", "prompt_len": 8})");
  auto i = load_policy_file(incomplete, spec_, hw_, budgets_, {});
  ASSERT_FALSE(i.is_ok());
  EXPECT_NE(i.status().message().find(incomplete), std::string::npos) << i.status().to_string();
}

TEST_F(PolicyFileTest, APolicyThatDoesNotFitSaysSoAndNamesTheFile) {
  auto plan = planner::plan_policy(spec_, {64, 16, 0}, hw_, budgets_, {});
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  const std::string file = write("big.json", planner::policy_to_json(plan->policy).dump(2));
  // opt-125m's fp16 weights alone are ~250 MB; 16 MiB per tier holds none of the placements.
  const planner::Budgets tiny{16 * kMiB, 16 * kMiB, 16 * kMiB};
  auto r = load_policy_file(file, spec_, hw_, tiny, {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfMemory) << r.status().to_string();
  EXPECT_NE(r.status().message().find("tier short by"), std::string::npos)
      << r.status().to_string();
  EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().to_string();
}

}  // namespace
}  // namespace strata::tools
