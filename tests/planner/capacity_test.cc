#include "planner/capacity.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>

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

TEST(Capacity, ADiskIsNeverWorseThanNoneAndThroughputIsTheJobs) {
  CapacityOptions o;
  o.dram_sizes = {128 * kGiB, 256 * kGiB};
  o.prices = default_prices();
  const Workload w{512, 64, 5000};
  auto r = sweep_capacity(testing::spec_of("llama-2-70b"), w, {testing::hardware("h100-pcie"), testing::hardware("l4")}, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  std::map<std::pair<std::string, uint64_t>, double> none;
  for (const auto& p : r->points)
    if (p.disk == "none" && p.feasible) none[{p.machine, p.dram_bytes}] = p.job_s;
  for (const auto& p : r->points) {
    if (!p.feasible) continue;
    // One definition of throughput: the whole job's generated tokens over its time.
    EXPECT_DOUBLE_EQ(p.tokens_per_s, 5000.0 * 64 / p.job_s);
    auto n = none.find({p.machine, p.dram_bytes});
    if (n != none.end()) EXPECT_LE(p.job_s, n->second) << p.machine << " " << p.disk;
    if (p.disk_unused) EXPECT_EQ(p.job_s, none.at({p.machine, p.dram_bytes}));
  }
  // The chart's axis spans the data's 1-2-5 steps, not whole decades beyond it.
  double hi = 0;
  for (const auto& p : r->points) hi = std::max(hi, p.tokens_per_s);
  const std::string html = capacity_html(*r);
  double top = 0;
  for (double v : {1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0})
    if (v >= hi) {
      top = v;
      break;
    }
  ASSERT_GT(top, 0);
  char label[32];
  std::snprintf(label, sizeof label, ">%.0f</text>", top);
  EXPECT_NE(html.find(label), std::string::npos) << "axis top " << top << " for a maximum of " << hi;
  std::snprintf(label, sizeof label, ">%.0f</text>", top * (top >= 100 && std::fmod(top, 200) == 0 ? 2.5 : 2));
  EXPECT_EQ(html.find(label), std::string::npos) << "nothing above the next step";
}

TEST(Capacity, AtScaleEachGpuRunsItsShardWithItsShareOfTheMachine) {
  CapacityOptions o;
  o.dram_sizes = {512 * kGiB};
  o.prices = default_prices();
  o.disks = {default_disk_options().front()};
  const Workload w{512, 64, 8000};
  const auto spec = testing::spec_of("llama-2-70b");
  const std::vector<HardwareProfile> machines = {testing::hardware("h100-pcie")};
  // One engine on 1/8 of the job with 1/4 of a 512 GiB machine: the point of 2 machines x 4 GPUs.
  CapacityOptions one = o;
  one.dram_sizes = {128 * kGiB};
  for (DiskOption& d : one.disks) {
    d.capacity_bytes /= 4;
    d.read_gbps /= 4;
    d.write_gbps /= 4;
  }
  auto single = sweep_capacity(spec, {512, 64, 1000}, machines, one);
  auto scaled = sweep_capacity_at_scale(spec, w, machines, o, Scale{4, 2});
  ASSERT_TRUE(single.is_ok() && scaled.is_ok()) << scaled.status().to_string();
  ASSERT_EQ(scaled->points.size(), single->points.size());
  const CapacityPoint &s = single->points[0], &p = scaled->points[0];
  ASSERT_TRUE(p.feasible) << p.reason;
  EXPECT_EQ(p.dram_bytes, 512 * kGiB);  // per machine
  EXPECT_DOUBLE_EQ(p.job_s, s.job_s);
  EXPECT_NEAR(p.tokens_per_s, 8000.0 * 64 / p.job_s, 1e-9 * p.tokens_per_s);
  const double machine_hour = 4 * o.prices.gpu_per_hour.at("h100-pcie") + o.prices.disk_per_hour.at(p.disk) +
                              o.prices.dram_gib_per_hour * 512;
  EXPECT_NEAR(p.price_per_hour, 2 * machine_hour, 1e-9 * machine_hour);
  EXPECT_NEAR(p.cost, p.job_s / 3600 * 2 * machine_hour, 1e-9 * p.cost);
  EXPECT_NE(capacity_markdown(*scaled).find("on 2 machines x 4 GPUs"), std::string::npos);
  EXPECT_EQ(capacity_json(*scaled)["scale"]["machines"], 2);
  // Scale 1 x 1 is the plain sweep.
  auto plain = sweep_capacity(spec, w, machines, o);
  auto unit = sweep_capacity_at_scale(spec, w, machines, o, Scale{});
  ASSERT_TRUE(plain.is_ok() && unit.is_ok());
  EXPECT_DOUBLE_EQ(unit->points[0].job_s, plain->points[0].job_s);
  EXPECT_DOUBLE_EQ(unit->points[0].cost, plain->points[0].cost);
  EXPECT_FALSE(sweep_capacity_at_scale(spec, w, machines, o, Scale{0, 1}).is_ok());
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
