// `strata profile` as users run it, the real binary as a subprocess, without a GPU: a quick run
// with the GPU skipped and taken from the catalogue writes a profile that parses, with the CPU
// attention and disk per-call fields measured and their fits recorded in its source; such a
// partial profile is not cached; a corrupt cache file stops a run that would read it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "planner/hardware.h"
#include "profile_cache.h"
#include "testing/test_data.h"

namespace strata {
namespace {

struct Outcome {
  int code = -1;
  std::string all;  // stdout and stderr
};

Outcome run_strata(const std::string& env, const std::vector<std::string>& args) {
  const std::string log = (testing::make_temp_dir("strata-profile-cli") / "log").string();
  std::string cmd = env + " '" + std::string(STRATA_BINARY) + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >'" + log + "' 2>&1";
  Outcome o;
  const int status = std::system(cmd.c_str());
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log);
  o.all.assign(std::istreambuf_iterator<char>(in), {});
  return o;
}

TEST(ProfileCli, QuickWithoutTheGpuWritesAProfileThatParses) {
  const auto dir = testing::make_temp_dir("strata-profile-cli");
  const auto cache = dir / "cache";
  const std::string out = (dir / "hw.json").string();
  const Outcome o = run_strata(
      "STRATA_CACHE_DIR='" + cache.string() + "'",
      {"profile", "--quick", "--skip-gpu", "--assume-gpu", "l4", "--dir", dir.string(), "--threads",
       "2", "--dram-test-bytes", "32MiB", "--disk-test-bytes", "32MiB", "-o", out});
  ASSERT_EQ(o.code, 0) << o.all;
  EXPECT_NE(o.all.find("of"), std::string::npos) << "a progress line: " << o.all;
  EXPECT_NE(o.all.find("CPU attention per call"), std::string::npos) << o.all;

  nlohmann::json j;
  std::ifstream(out) >> j;
  auto p = planner::parse_hardware_profile(j, out);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_TRUE(p->cpu.attention_fp16.present());
  EXPECT_TRUE(p->cpu.attention_int4.present());
  EXPECT_GT(p->disk.read_gbps, 0);
  EXPECT_GT(p->disk.write_gbps, 0);
  // A fixed cost per call can sit below the noise of a shared machine; the fit then says so.
  for (double latency : {p->disk.read_latency_us, p->disk.write_latency_us}) {
    EXPECT_GE(latency, 0);
    if (latency == 0) EXPECT_NE(p->source.find("fixed cost not resolved"), std::string::npos) << p->source;
  }
  EXPECT_FALSE(p->machine.cpu_model.empty());
  EXPECT_FALSE(p->machine.offload_device.empty());
  for (const char* s : {"quick mode", "cpu.attention_fp16", "disk.read_latency_us",
                        "rms relative error", "--skip-gpu", "catalogue entry"})
    EXPECT_NE(p->source.find(s), std::string::npos) << s << " in " << p->source;
  // Assumed GPU figures are not this machine's: nothing is cached.
  EXPECT_FALSE(std::filesystem::exists(cache / "profiles") &&
               !std::filesystem::is_empty(cache / "profiles"));
}

TEST(ProfileCli, ACorruptCachedProfileStopsARunThatWouldReadIt) {
  if (cuda::query_devices().devices.empty())
    GTEST_SKIP() << "only a machine with a GPU reads its cached profile";
  const auto dir = testing::make_temp_dir("strata-profile-cli");
  const auto cache = dir / "cache";
  auto key = tools::machine_key(dir, 0);
  ASSERT_TRUE(key.is_ok()) << key.status().to_string();
  std::filesystem::create_directories(cache / "profiles");
  const auto file = tools::cached_profile_path(cache / "profiles", *key);
  std::ofstream(file) << "not json";
  const Outcome o =
      run_strata("STRATA_CACHE_DIR='" + cache.string() + "'",
                 {"profile", "--quick", "--dir", dir.string(), "-o", (dir / "hw.json").string()});
  EXPECT_NE(o.code, 0) << o.all;
  EXPECT_NE(o.all.find(file.string()), std::string::npos) << o.all;
  EXPECT_NE(o.all.find("--refresh"), std::string::npos) << o.all;
}

}  // namespace
}  // namespace strata
