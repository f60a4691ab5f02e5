#include "planner/hardware.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <tuple>

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
                           "rtx-4090", "h100-test-host", "rtx-3090", "rtx-a6000", "l40s", "h200"})
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

// A profile with every per-call field, as `strata profile` will write them.
nlohmann::json with_call_costs() {
  auto j = hardware_profile_to_json(*catalogue_hardware("h100-test-host"));
  j["gpu"]["linear_fp16"] = nlohmann::json::parse(R"([{"rows": 1, "tflops": 2}, {"rows": 64, "tflops": 90},
                                                      {"rows": 4096, "tflops": 600}])");
  j["gpu"]["linear_int4"] = nlohmann::json::parse(R"([{"rows": 1, "tflops": 4}, {"rows": 4096, "tflops": 500}])");
  j["gpu"]["fixed"] = {{"prefill_layer_us", 300}, {"decode_layer_us", 120}, {"decode_split_layer_us", 200}};
  j["cpu"]["attention_fp16"] = {{"fixed_us", 40}, {"per_sequence_us", 1.5}, {"gbps", 90}};
  j["cpu"]["attention_int4"] = {{"fixed_us", 40}, {"gbps", 60}};
  j["links"]["h2d_latency_us"] = 6;
  j["links"]["d2h_latency_us"] = 2.5;
  j["disk"]["read_latency_us"] = 90;
  j["disk"]["write_latency_us"] = 30;
  j["calibration"] = {{"decode", {{"h2d", 1.25}, {"gpu", 0.9}}}};
  return j;
}

TEST(Hardware, PerCallCostsParseAndRoundTrip) {
  auto p = parse_hardware_profile(with_call_costs(), "measured.json");
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->gpu.linear_fp16.points.size(), 3u);
  EXPECT_DOUBLE_EQ(p->gpu.fixed.decode_split_layer_us, 200);
  EXPECT_DOUBLE_EQ(p->cpu.attention_fp16.per_sequence_us, 1.5);
  EXPECT_DOUBLE_EQ(p->cpu.attention_int4.per_sequence_us, 0);  // optional inside the object
  EXPECT_DOUBLE_EQ(p->links.d2h_latency_us, 2.5);
  EXPECT_DOUBLE_EQ(p->disk.read_latency_us, 90);
  EXPECT_DOUBLE_EQ(p->calibration.of(kDecode, kCalH2d), 1.25);
  EXPECT_DOUBLE_EQ(p->calibration.of(kDecode, kCalD2h), 1);  // absent: 1
  EXPECT_DOUBLE_EQ(p->calibration.of(kPrefill, kCalGpu), 1);
  auto again = parse_hardware_profile(hardware_profile_to_json(*p), "again");
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(hardware_profile_to_json(*again), hardware_profile_to_json(*p));
  // A profile without them writes none of them.
  const auto plain = hardware_profile_to_json(*catalogue_hardware("l4"));
  for (const char* key : {"linear_fp16", "linear_int4", "fixed"}) EXPECT_FALSE(plain["gpu"].contains(key));
  EXPECT_FALSE(plain["links"].contains("h2d_latency_us"));
  EXPECT_FALSE(plain.contains("calibration"));
}

TEST(Hardware, BadPerCallCostsNameTheField) {
  struct Case {
    const char* pointer;
    nlohmann::json value;
    const char* message;
  };
  const Case cases[] = {
      {"/gpu/linear_fp16", nlohmann::json::array(), "measured.json: gpu.linear_fp16: must be a non-empty array"},
      {"/gpu/linear_fp16/1/rows", 0.5, "gpu.linear_fp16[1].rows: must be larger than the previous point's"},
      {"/gpu/linear_int4/0/tflops", -3, "gpu.linear_int4[0].tflops: must be a positive number"},
      {"/gpu/fixed/decode_layer_us", "fast", "gpu.fixed.decode_layer_us: must be a number >= 0"},
      {"/cpu/attention_fp16/gbps", 0, "cpu.attention_fp16.gbps: must be a positive number"},
      {"/links/h2d_latency_us", -1, "links.h2d_latency_us: must be a number >= 0"},
      {"/disk/write_latency_us", nullptr, "disk.write_latency_us: must be a number >= 0"},
      {"/calibration/prefill/d2h", 0, "calibration.prefill.d2h: must be a positive number"},
      {"/gpu/cuda_names/0", "", "gpu.cuda_names[0]: must be a non-empty string"},
  };
  for (const auto& c : cases) {
    auto j = with_call_costs();
    j["gpu"]["cuda_names"] = {"NVIDIA H100 80GB HBM3"};
    j[nlohmann::json::json_pointer(c.pointer)] = c.value;
    auto r = parse_hardware_profile(j, "measured.json");
    ASSERT_FALSE(r.is_ok()) << c.pointer;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
  }
}

TEST(Hardware, TheMachineOfAMeasuredProfileIsOptionalAndRoundTrips) {
  auto j = with_call_costs();
  EXPECT_TRUE(parse_hardware_profile(j, "measured.json")->machine.empty());  // absent: empty
  j["machine"] = {{"gpu_uuid", "GPU-0a1b2c3d-0000-1111-2222-333344445555"},
                  {"gpu_name", "NVIDIA H100 80GB HBM3"},
                  {"cpu_model", "AMD EPYC 9454 48-Core Processor"},
                  {"offload_device", "259:3"}};
  auto p = parse_hardware_profile(j, "measured.json");
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->machine.gpu_uuid, "GPU-0a1b2c3d-0000-1111-2222-333344445555");
  EXPECT_EQ(p->machine.offload_device, "259:3");
  EXPECT_EQ(hardware_profile_to_json(*p)["machine"], j["machine"]);
  // Only the fields a machine has: a host without a GPU records none for it.
  j["machine"] = {{"cpu_model", "Intel(R) Xeon(R) Gold 6338"}};
  p = parse_hardware_profile(j, "measured.json");
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_TRUE(p->machine.gpu_uuid.empty());
  EXPECT_FALSE(p->machine.empty());
  // The catalogue's entries describe no particular machine and write none.
  EXPECT_FALSE(hardware_profile_to_json(*catalogue_hardware("l4")).contains("machine"));

  for (auto [pointer, value, message] :
       {std::tuple{"/machine", nlohmann::json("h100"), "measured.json: machine: must be an object"},
        std::tuple{"/machine/gpu_uuid", nlohmann::json(7),
                   "measured.json: machine.gpu_uuid: must be a string"}}) {
    auto bad = with_call_costs();
    bad[nlohmann::json::json_pointer(pointer)] = value;
    auto r = parse_hardware_profile(bad, "measured.json");
    ASSERT_FALSE(r.is_ok()) << pointer;
    EXPECT_NE(r.status().message().find(message), std::string::npos) << r.status().message();
  }
}

TEST(Hardware, RateCurvesInterpolateInLogRowsAndClampAtTheEnds) {
  RateCurve c;
  c.points = {{1, 10}, {100, 100}, {10000, 400}};
  EXPECT_DOUBLE_EQ(c.tflops(0.5), 10);     // below the first point
  EXPECT_DOUBLE_EQ(c.tflops(1), 10);
  EXPECT_NEAR(c.tflops(10), 55, 1e-9);     // halfway in log(rows) from 1 to 100
  EXPECT_NEAR(c.tflops(1000), 250, 1e-9);  // halfway from 100 to 10000
  EXPECT_DOUBLE_EQ(c.tflops(1e6), 400);    // above the last
}

}  // namespace
}  // namespace strata::planner
