// generate --devices: the device list, and a GPU's NUMA node and CPUs read from a fake sysfs tree.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device_numa.h"
#include "multi_engine.h"
#include "testing/test_data.h"

namespace strata::tools {
namespace {

namespace fs = std::filesystem;

std::vector<cuda::DeviceInfo> gpus(int n) {
  std::vector<cuda::DeviceInfo> out;
  for (int i = 0; i < n; ++i) {
    cuda::DeviceInfo d;
    d.index = i;
    d.pci_bus_id = "0000:" + std::to_string(0x10 + i) + ":00.0";
    out.push_back(d);
  }
  return out;
}

TEST(Devices, ParsesAllListsAndCpuEngines) {
  auto all = parse_devices("all", gpus(3));
  ASSERT_TRUE(all.is_ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].device, "cuda:2");
  EXPECT_EQ((*all)[2].pci_bus_id, "0000:18:00.0");
  auto some = parse_devices("2,cuda:0", gpus(3));
  ASSERT_TRUE(some.is_ok());
  EXPECT_EQ((*some)[0].device, "cuda:2");
  EXPECT_EQ((*some)[1].device, "cuda:0");
  auto cpus = parse_devices("cpu,cpu,cpu", {});
  ASSERT_TRUE(cpus.is_ok());
  EXPECT_EQ(cpus->size(), 3u);
  for (const char* bad : {"all", "0", "", "cpu,", "x", "cpu,0"}) {
    auto r = parse_devices(bad, std::string(bad) == "cpu,0" ? gpus(1) : std::vector<cuda::DeviceInfo>{});
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) EXPECT_NE(r.status().message().find("--devices"), std::string::npos) << r.status().message();
  }
  EXPECT_NE(parse_devices("5", gpus(2)).status().message().find("there is no GPU 5"), std::string::npos);
}

constexpr uint64_t kGiB = uint64_t{1} << 30;

std::vector<cuda::DeviceInfo> gpus_with_memory(std::vector<uint64_t> total) {
  std::vector<cuda::DeviceInfo> out = gpus(static_cast<int>(total.size()));
  for (size_t i = 0; i < total.size(); ++i) out[i].total_memory = total[i];
  return out;
}

TEST(Devices, AGpuNamedSeveralTimesRunsOneEngineEach) {
  auto d = parse_devices("0,cuda:0,1,0", gpus_with_memory({80 * kGiB, 40 * kGiB}));
  ASSERT_TRUE(d.is_ok()) << d.status().message();
  ASSERT_EQ(d->size(), 4u);
  const char* want[] = {"cuda:0", "cuda:0", "cuda:1", "cuda:0"};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ((*d)[i].device, want[i]) << i;
  EXPECT_EQ((*d)[1].gpu, 0);
  EXPECT_EQ((*d)[1].pci_bus_id, "0000:16:00.0");
  EXPECT_EQ((*d)[1].gpu_memory, 80 * kGiB);
  EXPECT_EQ((*d)[2].gpu, 1);
  EXPECT_EQ((*d)[2].gpu_memory, 40 * kGiB);
  auto cpus = parse_devices("cpu,cpu", {});
  ASSERT_TRUE(cpus.is_ok());
  EXPECT_EQ((*cpus)[0].gpu, -1);
  EXPECT_EQ((*cpus)[0].gpu_memory, 0u);
  // Still refused: an unknown GPU among repeated ones, and GPUs mixed with the CPU.
  EXPECT_NE(parse_devices("0,0,2", gpus(2)).status().message().find("there is no GPU 2"),
            std::string::npos);
  EXPECT_FALSE(parse_devices("0,0,cpu", gpus(1)).is_ok());
}

TEST(Devices, WithoutGpuMemAGpuNamedKTimesGivesEachEngine90PercentOverK) {
  auto d = parse_devices("0,0,1,0", gpus_with_memory({80 * kGiB, 40 * kGiB}));
  ASSERT_TRUE(d.is_ok());
  auto mem = gpu_mem_per_engine(*d, "");
  ASSERT_TRUE(mem.is_ok()) << mem.status().message();
  ASSERT_EQ(mem->size(), 4u);
  const uint64_t share = 80 * kGiB / 10 * 9 / 3;  // 24 GiB
  EXPECT_EQ((*mem)[0], share);
  EXPECT_EQ((*mem)[1], share);
  EXPECT_EQ((*mem)[3], share);
  EXPECT_EQ((*mem)[2], 0u);  // GPU 1 named once: the engine's own default
  EXPECT_LE(3 * share, 80 * kGiB);
  // One engine per GPU: every engine keeps its default, as before.
  auto one_each =
      gpu_mem_per_engine(*parse_devices("0,1", gpus_with_memory({80 * kGiB, 40 * kGiB})), "");
  ASSERT_TRUE(one_each.is_ok());
  EXPECT_EQ(*one_each, (std::vector<uint64_t>{0, 0}));
  // CPU engines have no GPU budget.
  auto cpu = gpu_mem_per_engine(*parse_devices("cpu,cpu", {}), "");
  ASSERT_TRUE(cpu.is_ok());
  EXPECT_EQ(*cpu, (std::vector<uint64_t>{0, 0}));
  // A shared GPU whose size is not known cannot be split.
  auto unknown = gpu_mem_per_engine(*parse_devices("0,0", gpus(1)), "");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("give --gpu-mem"), std::string::npos)
      << unknown.status().message();
}

TEST(Devices, GpuMemIsEachEnginesBudgetAndMustFitTheSharedGpu) {
  auto d = parse_devices("1,0,0", gpus_with_memory({80 * kGiB, 40 * kGiB}));
  ASSERT_TRUE(d.is_ok());
  // 2 x 40 GiB fits GPU 0's 80 GiB exactly; GPU 1's single engine gets it too.
  auto fits = gpu_mem_per_engine(*d, "40GiB");
  ASSERT_TRUE(fits.is_ok()) << fits.status().message();
  EXPECT_EQ(*fits, (std::vector<uint64_t>{40 * kGiB, 40 * kGiB, 40 * kGiB}));
  // 2 x 41 GiB does not: the error names the GPU, its engines, the budget and what to do.
  auto over = gpu_mem_per_engine(*d, "41GiB");
  ASSERT_FALSE(over.is_ok());
  const std::string m = over.status().message();
  EXPECT_EQ(over.status().code(), StatusCode::kInvalidArgument);
  for (const char* part : {"GPU 0", "engines 1, 2", "2 x --gpu-mem 41", "82", "80",
                           "lower --gpu-mem", "40", "fewer times"})
    EXPECT_NE(m.find(part), std::string::npos) << part << " not in: " << m;
  EXPECT_EQ(m.find("GPU 1"), std::string::npos) << m;
  // Three engines of 30 GiB on GPU 0 (90 GiB > 80 GiB) are refused; on two GPUs they are not.
  EXPECT_FALSE(
      gpu_mem_per_engine(*parse_devices("0,0,0", gpus_with_memory({80 * kGiB})), "30GiB").is_ok());
  EXPECT_TRUE(
      gpu_mem_per_engine(*parse_devices("0,0,1", gpus_with_memory({80 * kGiB, 80 * kGiB})), "30GiB")
          .is_ok());
  // A bad --gpu-mem value is an error naming the flag.
  auto bad = gpu_mem_per_engine(*d, "lots");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("--gpu-mem"), std::string::npos) << bad.status().message();
}

TEST(DeviceNuma, ReadsTheGpusNodeAndItsCpusFromSysfs) {
  const fs::path sys = testing::make_temp_dir("strata-sysfs");
  auto put = [&](const fs::path& rel, const std::string& text) {
    fs::create_directories((sys / rel).parent_path());
    std::ofstream(sys / rel) << text;
  };
  put("bus/pci/devices/0000:3b:00.0/numa_node", "1\n");
  put("bus/pci/devices/0000:af:00.0/numa_node", "-1\n");
  put("bus/pci/devices/0000:5e:00.0/numa_node", "banana\n");
  put("devices/system/node/node1/cpulist", "16-19,40,42-43\n");
  put("devices/system/node/node2/cpulist", "3-1\n");
  // CUDA's bus ids may be upper case with 8 domain digits.
  auto node = pci_numa_node(sys.string(), "00000000:3B:00.0");
  ASSERT_TRUE(node.is_ok()) << node.status().message();
  EXPECT_EQ(*node, 1);
  EXPECT_EQ(*pci_numa_node(sys.string(), "0000:af:00.0"), -1);  // no NUMA information
  EXPECT_FALSE(pci_numa_node(sys.string(), "0000:5e:00.0").is_ok());
  auto missing = pci_numa_node(sys.string(), "0000:01:00.0");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("0000:01:00.0/numa_node"), std::string::npos);
  auto cpus = numa_node_cpus(sys.string(), 1);
  ASSERT_TRUE(cpus.is_ok());
  EXPECT_EQ(*cpus, (std::vector<int>{16, 17, 18, 19, 40, 42, 43}));
  EXPECT_FALSE(numa_node_cpus(sys.string(), 2).is_ok());
  EXPECT_FALSE(numa_node_cpus(sys.string(), 3).is_ok());
  for (const char* bad : {"a", "1-", "1,,2", "-3", "4-2"}) EXPECT_FALSE(parse_cpu_list(bad).is_ok()) << bad;
  EXPECT_TRUE(parse_cpu_list("")->empty());
  fs::remove_all(sys);
}

TEST(DeviceNuma, BindsThisProcessToANode) {
  // The real machine's node 0, in a child process so the test's own affinity stays.
  if (!fs::exists("/sys/devices/system/node/node0/cpulist")) GTEST_SKIP() << "no NUMA information in /sys";
  const pid_t pid = fork();
  if (pid == 0) _exit(bind_process_to_numa_node("/sys", 0).is_ok() ? 0 : 1);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace strata::tools
