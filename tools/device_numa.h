// Where a GPU sits among the host's NUMA nodes, read from sysfs (/sys/bus/pci/devices/<bus
// id>/numa_node and /sys/devices/system/node/node<N>/cpulist), and binding a process to a node:
// its CPUs (sched_setaffinity) and its memory, preferred from the node (set_mempolicy), both kept
// across fork and exec, so an engine started after the binding allocates its pinned buffers
// there. `sysfs` is the root, "/sys" on a real machine (a fake tree in tests). No libnuma needed.
// Thread safe apart from the binding, which changes the calling process.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace strata::tools {

// The NUMA node of a PCI device ("0000:3B:00.0" or "00000000:3b:00.0", as CUDA writes bus ids);
// -1 when the kernel reports none (a single-node machine says -1). An error when the device is
// not in sysfs.
Result<int> pci_numa_node(const std::string& sysfs, const std::string& pci_bus_id);
// The CPUs of NUMA node `node`.
Result<std::vector<int>> numa_node_cpus(const std::string& sysfs, int node);
// "0-3,8,10-11" -> {0,1,2,3,8,10,11}.
Result<std::vector<int>> parse_cpu_list(const std::string& list);

// Binds this process (and what it starts) to node `node`: its CPUs and memory preferred there.
Status bind_process_to_numa_node(const std::string& sysfs, int node);

}  // namespace strata::tools
