#include "planner/hardware.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/units.h"

namespace strata::planner {
namespace {

TEST(Hardware, TheCatalogueHasEveryEntryWithItsSource) {
  auto all = hardware_catalogue();
  std::vector<std::string> names;
  for (const auto& h : all) {
    names.push_back(h.name);
    EXPECT_FALSE(h.source.empty()) << h.name;
  }
  for (const char* want : {"t4-flexgen", "l4", "a10g", "a100-40gb", "a100-80gb", "h100-pcie", "h100-sxm",
                           "rtx-4090", "h100-test-host"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
}

TEST(Hardware, FlexGensConstantsConvertedFromGiBPerSecond) {
  auto t4 = *catalogue_hardware("T4-FlexGen");  // names are case-insensitive
  const double gib = 1.073741824;
  EXPECT_NEAR(t4.links.h2d_gbps, 12.89 * gib, 0.01);
  EXPECT_NEAR(t4.links.d2h_gbps, 4.82 * gib, 0.01);
  EXPECT_NEAR(t4.disk.read_gbps, 0.473 * gib, 0.001);
  EXPECT_NEAR(t4.disk.write_gbps, 2.015 * gib, 0.001);
  EXPECT_DOUBLE_EQ(t4.gpu.gemm_prefill_tflops, 21.24);
  EXPECT_DOUBLE_EQ(t4.gpu.gemm_decode_tflops, 4.3);
  EXPECT_DOUBLE_EQ(t4.cpu.attention_gflops, 12.3);
}

TEST(Hardware, TheTestHostMatchesItsMeasurements) {
  auto h = *catalogue_hardware("h100-test-host");
  EXPECT_DOUBLE_EQ(h.links.h2d_gbps, 51.3);
  EXPECT_DOUBLE_EQ(h.links.d2h_gbps, 54.1);
  EXPECT_DOUBLE_EQ(h.links.duplex_gbps, 34.3);
  EXPECT_DOUBLE_EQ(h.disk.read_gbps, 1.70);
  EXPECT_DOUBLE_EQ(h.cpu.dram_gbps, 103);
  EXPECT_FALSE(h.in_capacity_sweep);
}

TEST(Hardware, RoundTripsThroughJson) {
  auto h = *catalogue_hardware("a100-80gb");
  auto again = parse_hardware_profile(hardware_profile_to_json(h), "again");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->gpu.memory_bytes / kMiB, h.gpu.memory_bytes / kMiB);
  EXPECT_EQ(again->links.h2d_gbps, h.links.h2d_gbps);
  EXPECT_EQ(again->disk.name, h.disk.name);
}

TEST(Hardware, BadProfilesNameTheFileAndTheField) {
  auto j = hardware_profile_to_json(*catalogue_hardware("l4"));
  j["gpu"].erase("hbm_gbps");
  auto r = parse_hardware_profile(j, "mine.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("mine.json: gpu.hbm_gbps"), std::string::npos) << r.status().message();

  j = hardware_profile_to_json(*catalogue_hardware("l4"));
  j["disk"]["read_gbps"] = -1;
  r = parse_hardware_profile(j, "mine.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("disk.read_gbps: must be a positive number"), std::string::npos);

  j = hardware_profile_to_json(*catalogue_hardware("l4"));
  j["links"]["duplex_gbps"] = 5;  // 2 x 5 < 25: cannot be each direction's share
  EXPECT_FALSE(parse_hardware_profile(j, "mine.json").is_ok());

  j = hardware_profile_to_json(*catalogue_hardware("l4"));
  j.erase("gpu");
  r = parse_hardware_profile(j, "cpu-only.json");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("--assume-gpu"), std::string::npos);

  EXPECT_EQ(catalogue_hardware("no-such-gpu").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace strata::planner
