#include "offload/near_gpu.h"

#include "cuda/device.h"
#include "storage/topology.h"

namespace strata::offload {

GpuNeighbourhood near_gpu(int device, Logger& log) {
  GpuNeighbourhood n;
  const cuda::DeviceQuery q = cuda::query_devices();
  if (device < 0 || device >= static_cast<int>(q.devices.size())) return n;
  auto topo = storage::query_topology(q.devices[static_cast<size_t>(device)].pci_bus_id);
  if (!topo.is_ok() || topo.value().numa_nodes.size() < 2 || !topo.value().gpu || !topo.value().gpu->found) return n;
  const storage::GpuLocality& gpu = *topo.value().gpu;
  auto cpus = storage::parse_cpu_list(gpu.cpus);
  if (!cpus.is_ok()) {
    log.warn("offload: CPU attention left unbound: " + cpus.status().to_string());
  } else {
    n.cpus = std::move(cpus).value();
  }
  if (!gpu.numa_nodes.empty()) n.numa_node = gpu.numa_nodes.front();
  return n;
}

}  // namespace strata::offload
