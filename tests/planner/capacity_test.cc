#include "planner/capacity.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/units.h"
#include "planner_test_util.h"

namespace strata::planner {
namespace {

TEST(Capacity, SweepsMachinesDramAndDisksAndPricesTheJob) {
  CapacityOptions o;
  o.dram_sizes = {64 * kGiB, 256 * kGiB};
  o.prices = default_prices();
  std::vector<HardwareProfile> machines = {testing::hardware("l4"), testing::hardware("h100-pcie")};
  auto r = sweep_capacity(testing::spec_of("llama-2-70b"), {512, 64, 5000}, machines, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const size_t disks = default_disk_options().size();
  ASSERT_EQ(r->points.size(), 2 * 2 * disks);
  for (const auto& p : r->points) {
    if (p.disk == "none" && p.dram_bytes == 64 * kGiB && p.machine == "l4") {
      // 128.5 GiB of weights do not fit in 21.5 GiB of GPU + 57.6 GiB of DRAM without a disk
      // (they do in the H100's 78.2 GiB + 57.6 GiB).
      EXPECT_FALSE(p.feasible) << p.machine;
      EXPECT_NE(p.reason.find("short by"), std::string::npos);
      continue;
    }
    ASSERT_TRUE(p.feasible) << p.machine << " " << p.disk << " " << p.reason;
    // Cost = hours x (GPU + DRAM + disk prices).
    const double hourly = o.prices.gpu_per_hour.at(p.machine) + o.prices.disk_per_hour.at(p.disk) +
                          o.prices.dram_gib_per_hour * static_cast<double>(p.dram_bytes / kGiB);
    EXPECT_NEAR(p.cost, p.job_s / 3600 * hourly, 1e-9 * p.cost);
    EXPECT_NEAR(p.job_s, std::ceil(5000.0 / static_cast<double>(p.policy.batch.block())) * p.policy.predicted.block_s,
                1e-6 * p.job_s);
  }
  const std::string html = capacity_html(*r);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);  // self-contained, static
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  const std::string md = capacity_markdown(*r);
  EXPECT_NE(md.find("| h100-pcie |"), std::string::npos);
  auto j = capacity_json(*r);
  EXPECT_EQ(j["points"].size(), r->points.size());
}

TEST(Capacity, NeedsAJob) {
  auto r = sweep_capacity(testing::spec_of("opt-1.3b"), {128, 16, 0}, {testing::hardware("l4")}, {});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST(Capacity, BadPriceAndDiskFilesAreNamed) {
  auto p = parse_prices(nlohmann::json::parse(R"({"gpu_per_hour": {"l4": "cheap"}})"), "prices.json");
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("prices.json: gpu_per_hour.l4"), std::string::npos);
  auto d = parse_disk_options(nlohmann::json::parse(R"({"disks": [{"name": "x", "capacity_gib": 10}]})"), "d.json");
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("d.json: disks[0].read_gbps"), std::string::npos);
}

}  // namespace
}  // namespace strata::planner
