// Where a GPU sits on a machine of several NUMA nodes: the CPUs nearest it and its memory node,
// for binding the engine's pinned memory and its CPU attention there. Reads the topology through
// hwloc (storage/topology.h) and the CUDA driver. Thread safe.
#pragma once

#include <vector>

#include "common/log.h"

namespace strata::offload {

struct GpuNeighbourhood {
  std::vector<int> cpus;  // empty: nothing to bind to
  int numa_node = -1;     // -1: any
};

// Empty and -1 with one NUMA node, or when hwloc cannot place CUDA device `device`: there is
// nothing to gain by binding. A CPU list hwloc gives but that does not parse is logged and left.
GpuNeighbourhood near_gpu(int device, Logger& log);

}  // namespace strata::offload
