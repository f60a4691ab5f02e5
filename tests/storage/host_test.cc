// Host arenas and the hwloc topology, checked against what the OS reports by other means
// (sched_getaffinity, sysconf).
#include <linux/mempolicy.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "storage/host_arena.h"
#include "storage/topology.h"
#include "storage_test_util.h"

namespace strata::storage {
namespace {

TEST(Topology, AgreesWithTheOs) {
  auto t = query_topology();
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(t->pus, CPU_COUNT(&set));
  EXPECT_GE(t->cores, 1);
  EXPECT_LE(t->cores, t->pus);
  ASSERT_GE(t->numa_nodes.size(), 1u);
  int node_pus = 0;
  for (const NumaNodeInfo& n : t->numa_nodes) node_pus += n.pus;
  EXPECT_EQ(node_pus, t->pus);
  // Each node's memory is what the kernel reports in /sys/devices/system/node/nodeN/meminfo.
  for (const NumaNodeInfo& n : t->numa_nodes) {
    const auto path = "/sys/devices/system/node/node" + std::to_string(n.os_index) + "/meminfo";
    std::ifstream in(path);
    if (!in) continue;
    std::string line;
    uint64_t kb = 0;
    while (std::getline(in, line)) {
      if (line.find("MemTotal:") != std::string::npos) {
        kb = std::stoull(line.substr(line.find(':') + 1));
      }
    }
    EXPECT_EQ(n.memory_bytes, kb * 1024) << path;
  }
  const double phys = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  EXPECT_GT(t->memory_bytes, 0u);
  EXPECT_LE(static_cast<double>(t->memory_bytes), 1.01 * phys);
  EXPECT_EQ(static_cast<double>(t->system_memory_bytes), phys);
  const std::string text = format_topology(*t);
  EXPECT_NE(text.find("NUMA nodes"), std::string::npos) << text;
  EXPECT_EQ(preferred_numa_node(*t), t->numa_nodes.front().os_index);
}

TEST(Topology, GpuByPciBusId) {
  auto bad = query_topology("not-a-bus-id");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  // A well-formed id no machine has: reported as not found, not an error.
  auto t = query_topology("ffff:ff:1f.7");
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  ASSERT_TRUE(t->gpu.has_value());
  EXPECT_FALSE(t->gpu->found);
  EXPECT_NE(format_topology(*t).find("ffff:ff:1f.7: not visible"), std::string::npos);
}

TEST(HostArena, AllocatesAlignedDisjointPiecesUntilFull) {
  Logger log(LogLevel::kQuiet);
  auto topo = query_topology();
  ASSERT_TRUE(topo.is_ok());
  HostArenaOptions o;
  o.bytes = 4 << 20;
  o.numa_node = preferred_numa_node(*topo);
  auto arena = HostArena::create(o, log);
  ASSERT_TRUE(arena.is_ok()) << arena.status().to_string();
  EXPECT_EQ((*arena)->capacity(), 4u << 20);
  auto a = (*arena)->allocate(100);
  auto b = (*arena)->allocate(5000);
  auto c = (*arena)->allocate(1 << 20, 1 << 20);
  ASSERT_TRUE(a.is_ok() && b.is_ok() && c.is_ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data()) % 4096, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b->data()) - reinterpret_cast<uintptr_t>(a->data()), 4096u);
  EXPECT_EQ((reinterpret_cast<uintptr_t>(c->data()) - reinterpret_cast<uintptr_t>(a->data())) %
                (1 << 20), 0u);
  EXPECT_EQ(b->size(), 5000u);
  EXPECT_EQ((*arena)->allocate(4 << 20).status().code(), StatusCode::kOutOfMemory);
  (*arena)->reset();
  EXPECT_EQ((*arena)->used(), 0u);
  EXPECT_TRUE((*arena)->allocate(4 << 20).is_ok());
}

TEST(HostArena, MlockPinningWorksOrWarns) {
  test::CapturedLog log;
  auto pinner = make_mlock_pinner();
  HostArenaOptions o;
  o.bytes = 2 << 20;
  o.pinner = pinner.get();
  auto arena = HostArena::create(o, log.logger());
  ASSERT_TRUE(arena.is_ok()) << arena.status().to_string();
  if (!(*arena)->pinned()) {
    EXPECT_NE(log.text().find("pinning failed"), std::string::npos);
  }
  EXPECT_EQ((*arena)->memory_kind(), MemoryKind::kHost);  // mlock is not device registration
  EXPECT_EQ(HostArena::create({}, log.logger()).status().code(), StatusCode::kInvalidArgument);
}

TEST(CpuList, ParsesRangesAndSinglesInOrder) {
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11").value(), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5").value(), std::vector<int>{5});
  for (const char* bad : {"", "3-1", "a", "1-", "1,,2", "-4"}) {
    auto r = parse_cpu_list(bad);
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

// The calling thread's memory policy: its mode, and for an address the node its page is on.
int thread_policy_mode() {
  int mode = -1;
  EXPECT_EQ(syscall(SYS_get_mempolicy, &mode, nullptr, 0, nullptr, 0), 0) << std::strerror(errno);
  return mode;
}

TEST(ThreadMemoryBinding, NewPagesComeFromTheBoundNodeAndTheDefaultComesBack) {
  auto topo = query_topology();
  ASSERT_TRUE(topo.is_ok()) << topo.status().to_string();
  if (topo.value().numa_nodes.empty()) GTEST_SKIP() << "hwloc sees no NUMA node";
  const int node = topo.value().numa_nodes.back().os_index;
  EXPECT_EQ(thread_policy_mode(), MPOL_DEFAULT);
  {
    auto bound = ThreadMemoryBinding::bind(node);
    if (!bound.is_ok()) GTEST_SKIP() << "memory binding refused here: " << bound.status().to_string();
    // hwloc may pick MPOL_BIND or, for the machine's only node, a preferred-nodes mode.
    EXPECT_NE(thread_policy_mode(), MPOL_DEFAULT);
    std::vector<char> pages(size_t{4} << 20, 1);  // touched here, under the binding
    int where = -1;
    ASSERT_EQ(syscall(SYS_get_mempolicy, &where, nullptr, 0, pages.data() + (size_t{2} << 20), MPOL_F_NODE | MPOL_F_ADDR), 0);
    EXPECT_EQ(where, node);
  }
  EXPECT_EQ(thread_policy_mode(), MPOL_DEFAULT);
  auto none = ThreadMemoryBinding::bind(100000);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("no such node"), std::string::npos) << none.status().to_string();
}

}  // namespace
}  // namespace strata::storage
