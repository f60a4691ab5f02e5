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
  EXPECT_NE(parse_devices("0,0", gpus(2)).status().message().find("named twice"), std::string::npos);
  EXPECT_NE(parse_devices("5", gpus(2)).status().message().find("there is no GPU 5"), std::string::npos);
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
