// The machine's memory topology as hwloc sees it: NUMA nodes with their memory and cores, and
// where a GPU sits on PCIe (which NUMA node and cores are nearest to it). The GPU is named by its
// PCI bus id ("0000:3b:00.0", as cudaDeviceGetPCIBusId writes it), so storage needs no CUDA.
// Pure data plus free functions; each call loads its own hwloc topology (thread safe).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <memory>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::storage {

struct NumaNodeInfo {
  int os_index = 0;
  uint64_t memory_bytes = 0;  // local memory of the node
  int cores = 0;              // physical cores whose nearest memory is this node
  int pus = 0;                // hardware threads, likewise
  std::string cpus;           // the PUs' OS indexes, as a list: "0-15,32-47"
};

struct GpuLocality {
  std::string pci_bus_id;      // as asked for
  bool found = false;          // false: hwloc does not see that PCI device
  std::vector<int> numa_nodes; // OS indexes of the nodes nearest the device (may be several)
  std::string cpus;            // PUs nearest the device
  float link_gbps = 0;         // PCIe link bandwidth hwloc reports, GB/s (0: unknown)
  std::string description;     // "PCI 10de:2330"
};

struct Topology {
  std::vector<NumaNodeInfo> numa_nodes;
  int packages = 0;
  int cores = 0;
  int pus = 0;
  uint64_t memory_bytes = 0;         // sum over NUMA nodes, as the kernel reports them per node
  uint64_t system_memory_bytes = 0;  // physical memory of the whole system (sysconf); on some
                                     // VMs larger than the per-node sum: use it for capacity
  std::optional<GpuLocality> gpu;
};

// Queries hwloc. With a non-empty `gpu_pci_bus_id`, also looks that device up (kInvalidArgument
// for a malformed id; found == false when no such device is visible).
Result<Topology> query_topology(std::string_view gpu_pci_bus_id = {});

// A human-readable report, one fact per line.
std::string format_topology(const Topology& topology);

// The NUMA node host buffers for the GPU should live on: the first node nearest the GPU, else
// the first node; -1 when the topology has no NUMA node.
int preferred_numa_node(const Topology& topology);

// While it lives, pages that the creating thread touches first (the pinned buffers the CUDA
// driver allocates for it included) come from NUMA node `os_index`; the thread's default policy
// comes back when it goes. Not for sharing between threads.
class ThreadMemoryBinding {
 public:
  // kUnsupported with the OS's reason when the node cannot be bound (no such node, no NUMA).
  static Result<std::unique_ptr<ThreadMemoryBinding>> bind(int os_index);
  ~ThreadMemoryBinding();
  ThreadMemoryBinding(const ThreadMemoryBinding&) = delete;
  ThreadMemoryBinding& operator=(const ThreadMemoryBinding&) = delete;

 private:
  ThreadMemoryBinding() = default;
  struct State;
  std::unique_ptr<State> state_;
};

// The CPUs of a list such as "0-15,32-47" (GpuLocality::cpus, NumaNodeInfo::cpus), in order;
// kInvalidArgument naming the bad part.
Result<std::vector<int>> parse_cpu_list(std::string_view list);

// Binds the pages of [addr, addr + bytes) to NUMA node `os_index` (call before first touch).
Status bind_memory_to_numa_node(void* addr, size_t bytes, int os_index);

}  // namespace strata::storage
