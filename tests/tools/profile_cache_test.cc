// The per-machine profile cache: where it lives ($STRATA_CACHE_DIR, $XDG_CACHE_HOME, ~/.cache),
// a stored profile coming back whole with its machine and mode, and the errors for a corrupt file,
// another format and another machine's profile, each naming the file and the way out.
#include "profile_cache.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "testing/test_data.h"

namespace strata::tools {
namespace {

// Sets an environment variable for one test and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    had_ = std::getenv(name) != nullptr;
    if (value.empty())
      unsetenv(name);
    else
      setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

MachineKey key_a() {
  return {"GPU-0a1b2c3d-0000-1111-2222-333344445555", "NVIDIA H100 80GB HBM3", "AMD EPYC 9454",
          "259:3"};
}

planner::HardwareProfile some_profile() {
  planner::HardwareProfile p = planner::catalogue_hardware("l4").value();
  p.links.h2d_latency_us = 6.5;
  p.disk.read_latency_us = 80;
  p.cpu.attention_fp16 = {30, 1.5, 40};
  return p;
}

void write_text(const std::filesystem::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
}

TEST(ProfileCache, StrataCacheDirIsHonouredAndAProfileRoundTrips) {
  const auto root = testing::make_temp_dir("profile-cache");
  ScopedEnv cache("STRATA_CACHE_DIR", root.string());
  auto dir = profile_cache_dir();
  ASSERT_TRUE(dir.is_ok()) << dir.status().to_string();
  EXPECT_EQ(*dir, root / "profiles");
  EXPECT_TRUE(std::filesystem::is_directory(*dir));

  auto none = load_cached_profile(key_a());
  ASSERT_TRUE(none.is_ok()) << none.status().to_string();
  EXPECT_FALSE(none->has_value());

  auto file = store_cached_profile(key_a(), some_profile(), /*quick=*/true);
  ASSERT_TRUE(file.is_ok()) << file.status().to_string();
  EXPECT_EQ(file->parent_path(), root / "profiles");
  EXPECT_EQ(*file, cached_profile_path(*dir, key_a()));
  EXPECT_TRUE(
      std::regex_match(file->filename().string(), std::regex("profile-[0-9a-f]{16}\\.json")));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(*dir), {}), 1)
      << "no temporary file is left";

  auto back = load_cached_profile_entry(key_a());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_TRUE(back->has_value());
  EXPECT_TRUE((*back)->quick);
  EXPECT_EQ((*back)->file, *file);
  EXPECT_EQ((*back)->profile.machine, key_a());
  planner::HardwareProfile want = some_profile();
  want.machine = key_a();
  EXPECT_EQ(planner::hardware_profile_to_json((*back)->profile),
            planner::hardware_profile_to_json(want));

  // Another machine has its own file: nothing cached for it yet.
  MachineKey other = key_a();
  other.gpu_uuid = "GPU-ffffffff-0000-1111-2222-333344445555";
  EXPECT_NE(cached_profile_path(*dir, other), *file);
  EXPECT_FALSE(load_cached_profile(other)->has_value());
  // A full measurement replaces the quick one.
  ASSERT_TRUE(store_cached_profile(key_a(), some_profile()).is_ok());
  EXPECT_FALSE((*load_cached_profile_entry(key_a()))->quick);
}

TEST(ProfileCache, XdgCacheHomeAndHomeGiveTheDirectory) {
  const auto root = testing::make_temp_dir("profile-cache-xdg");
  ScopedEnv strata_dir("STRATA_CACHE_DIR", "");
  {
    ScopedEnv xdg("XDG_CACHE_HOME", (root / "xdg").string());
    auto dir = profile_cache_dir();
    ASSERT_TRUE(dir.is_ok()) << dir.status().to_string();
    EXPECT_EQ(*dir, root / "xdg" / "strata" / "profiles");
    EXPECT_TRUE(std::filesystem::is_directory(*dir));
  }
  ScopedEnv xdg("XDG_CACHE_HOME", "");
  {
    ScopedEnv home("HOME", (root / "home").string());
    auto dir = profile_cache_dir();
    ASSERT_TRUE(dir.is_ok()) << dir.status().to_string();
    EXPECT_EQ(*dir, root / "home" / ".cache" / "strata" / "profiles");
  }
  ScopedEnv home("HOME", "");
  auto none = profile_cache_dir();
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("--no-cache"), std::string::npos);
}

TEST(ProfileCache, ABadCacheFileIsAnErrorNamingItAndTheWayOut) {
  const auto root = testing::make_temp_dir("profile-cache-bad");
  ScopedEnv cache("STRATA_CACHE_DIR", root.string());
  const std::filesystem::path file = cached_profile_path(root / "profiles", key_a());
  auto expect_error = [&](const char* why) {
    auto r = load_cached_profile(key_a());
    ASSERT_FALSE(r.is_ok()) << why;
    const std::string m = r.status().message();
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << m;
    EXPECT_NE(m.find(file.string()), std::string::npos) << m;
    EXPECT_NE(m.find(why), std::string::npos) << m;
    EXPECT_NE(m.find("delete it or run `strata profile --refresh`"), std::string::npos) << m;
  };
  ASSERT_TRUE(profile_cache_dir().is_ok());
  write_text(file, "{\"name\": \"half a profi");
  expect_error("is not valid JSON");

  // Another machine's profile under this machine's name (a copied file).
  MachineKey other = key_a();
  other.offload_device = "8:1";
  auto stored = store_cached_profile(other, some_profile());
  ASSERT_TRUE(stored.is_ok()) << stored.status().to_string();
  std::filesystem::rename(*stored, file);
  expect_error("describes another machine");

  nlohmann::json j;
  std::ifstream(file) >> j;
  j["machine"]["offload_device"] = key_a().offload_device;
  j["cache_format"] = kProfileCacheFormat + 1;
  write_text(file, j.dump());
  expect_error("cache format");

  // An older strata's file is no cached profile: the caller measures again.
  j["cache_format"] = kProfileCacheFormat - 1;
  write_text(file, j.dump());
  auto older = load_cached_profile(key_a());
  ASSERT_TRUE(older.is_ok()) << older.status().to_string();
  EXPECT_FALSE(older->has_value());

  j["cache_format"] = kProfileCacheFormat;
  j["links"]["h2d_gbps"] = -1;
  write_text(file, j.dump());
  expect_error("links.h2d_gbps");

  j["links"]["h2d_gbps"] = 20;
  write_text(file, j.dump());
  EXPECT_TRUE(load_cached_profile(key_a()).is_ok());
}

TEST(ProfileCache, TheMachineKeyReadsTheCpuModelAndTheOffloadDevice) {
  EXPECT_EQ(cpu_model_from_cpuinfo(
                "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9454 "
                "48-Core Processor  \nmodel name\t: other\n"),
            "AMD EPYC 9454 48-Core Processor");
  EXPECT_EQ(cpu_model_from_cpuinfo("processor : 0\nHardware : BCM2835\n"), "BCM2835");
  EXPECT_EQ(cpu_model_from_cpuinfo(""), "unknown CPU");

  const auto dir = testing::make_temp_dir("profile-key");
  auto k = machine_key(dir, 0);
  ASSERT_TRUE(k.is_ok()) << k.status().to_string();
  EXPECT_FALSE(k->cpu_model.empty());
  EXPECT_TRUE(std::regex_match(k->offload_device, std::regex("[0-9]+:[0-9]+")))
      << k->offload_device;
  EXPECT_EQ(k->gpu_uuid.empty(), k->gpu_name.empty());
  auto again = machine_key(dir, 0);
  EXPECT_EQ(*again, *k);
  auto missing = machine_key(dir / "nope", 0);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
}

}  // namespace
}  // namespace strata::tools
