#include "storage/topology.h"

#include <hwloc.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <unistd.h>

#include "common/units.h"

namespace strata::storage {
namespace {

struct TopologyDeleter {
  void operator()(hwloc_topology* t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

Result<TopologyPtr> load(bool with_pci) {
  hwloc_topology_t t = nullptr;
  if (hwloc_topology_init(&t) != 0) return internal_error("hwloc_topology_init failed");
  TopologyPtr topo(t);
  if (with_pci) hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(t) != 0) {
    return io_error(std::string("hwloc_topology_load: ") + std::strerror(errno), errno);
  }
  return topo;
}

std::string list_string(hwloc_const_bitmap_t set) {
  char* s = nullptr;
  if (hwloc_bitmap_list_asprintf(&s, set) < 0 || s == nullptr) return "?";
  std::string out(s);
  std::free(s);
  return out;
}

bool valid_bus_id(std::string_view id) {
  unsigned domain = 0, bus = 0, dev = 0, func = 0;
  char tail = 0;
  const std::string s(id);
  return std::sscanf(s.c_str(), "%x:%x:%x.%x%c", &domain, &bus, &dev, &func, &tail) == 4 ||
         std::sscanf(s.c_str(), "%x:%x.%x%c", &bus, &dev, &func, &tail) == 3;
}

}  // namespace

Result<Topology> query_topology(std::string_view gpu_pci_bus_id) {
  if (!gpu_pci_bus_id.empty() && !valid_bus_id(gpu_pci_bus_id)) {
    std::string msg = "'";
    msg += gpu_pci_bus_id;
    msg += "' is not a PCI bus id (expected DDDD:BB:DD.F, e.g. 0000:3b:00.0)";
    return invalid_argument(std::move(msg));
  }
  STRATA_ASSIGN_OR_RETURN(TopologyPtr topo, load(!gpu_pci_bus_id.empty()));
  hwloc_topology_t t = topo.get();
  Topology out;
  out.packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
  out.cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
  out.pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
  out.system_memory_bytes =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const int nodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t node = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    NumaNodeInfo info;
    info.os_index = static_cast<int>(node->os_index);
    info.memory_bytes = node->attr ? node->attr->numanode.local_memory : 0;
    if (node->cpuset) {
      info.cores = hwloc_get_nbobjs_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_CORE);
      info.pus = hwloc_get_nbobjs_inside_cpuset_by_type(t, node->cpuset, HWLOC_OBJ_PU);
      info.cpus = list_string(node->cpuset);
    }
    out.memory_bytes += info.memory_bytes;
    out.numa_nodes.push_back(std::move(info));
  }
  if (!gpu_pci_bus_id.empty()) {
    GpuLocality gpu;
    gpu.pci_bus_id = std::string(gpu_pci_bus_id);
    hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(t, gpu.pci_bus_id.c_str());
    if (dev != nullptr) {
      gpu.found = true;
      char desc[64];
      std::snprintf(desc, sizeof(desc), "PCI %04x:%04x", dev->attr->pcidev.vendor_id,
                    dev->attr->pcidev.device_id);
      gpu.description = desc;
      gpu.link_gbps = dev->attr->pcidev.linkspeed;
      hwloc_obj_t parent = hwloc_get_non_io_ancestor_obj(t, dev);
      if (parent != nullptr) {
        if (parent->cpuset) gpu.cpus = list_string(parent->cpuset);
        for (const NumaNodeInfo& n : out.numa_nodes) {
          if (parent->nodeset && hwloc_bitmap_isset(parent->nodeset, static_cast<unsigned>(n.os_index))) {
            gpu.numa_nodes.push_back(n.os_index);
          }
        }
      }
    }
    out.gpu = std::move(gpu);
  }
  return out;
}

std::string format_topology(const Topology& t) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof(line), "packages       %d\ncores          %d (%d hardware threads)\n",
                t.packages, t.cores, t.pus);
  s += line;
  std::snprintf(line, sizeof(line), "memory         %s (NUMA nodes: %s in %zu node%s)\n",
                format_bytes(t.system_memory_bytes).c_str(), format_bytes(t.memory_bytes).c_str(),
                t.numa_nodes.size(), t.numa_nodes.size() == 1 ? "" : "s");
  s += line;
  for (const NumaNodeInfo& n : t.numa_nodes) {
    std::snprintf(line, sizeof(line), "  node %-3d     %s, %d cores (%d threads), cpus %s\n",
                  n.os_index, format_bytes(n.memory_bytes).c_str(), n.cores, n.pus,
                  n.cpus.c_str());
    s += line;
  }
  if (t.gpu) {
    const GpuLocality& g = *t.gpu;
    if (!g.found) {
      s += "gpu            " + g.pci_bus_id + ": not visible to hwloc (no PCIe locality)\n";
    } else {
      std::string nodes;
      for (int n : g.numa_nodes) {
        if (!nodes.empty()) nodes += ',';
        nodes += std::to_string(n);
      }
      char link[32] = "speed unknown";
      if (g.link_gbps > 0) std::snprintf(link, sizeof(link), "%.2f GB/s", g.link_gbps);
      std::snprintf(line, sizeof(line),
                    "gpu            %s (%s), nearest NUMA node %s, cpus %s, link %s\n",
                    g.pci_bus_id.c_str(), g.description.c_str(),
                    nodes.empty() ? "unknown" : nodes.c_str(), g.cpus.c_str(), link);
      s += line;
    }
  }
  return s;
}

int preferred_numa_node(const Topology& t) {
  if (t.gpu && t.gpu->found && !t.gpu->numa_nodes.empty()) return t.gpu->numa_nodes.front();
  return t.numa_nodes.empty() ? -1 : t.numa_nodes.front().os_index;
}

Status bind_memory_to_numa_node(void* addr, size_t bytes, int os_index) {
  STRATA_ASSIGN_OR_RETURN(TopologyPtr topo, load(false));
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  hwloc_bitmap_only(set, static_cast<unsigned>(os_index));
  const int rc = hwloc_set_area_membind(topo.get(), addr, bytes, set, HWLOC_MEMBIND_BIND,
                                        HWLOC_MEMBIND_BYNODESET);
  const int err = errno;
  hwloc_bitmap_free(set);
  if (rc != 0) {
    return Status(StatusCode::kUnsupported,
                  "binding " + format_bytes(bytes) + " to NUMA node " + std::to_string(os_index) +
                      ": " + std::strerror(err),
                  err);
  }
  return Status::ok();
}

struct ThreadMemoryBinding::State {
  TopologyPtr topo;
};

Result<std::unique_ptr<ThreadMemoryBinding>> ThreadMemoryBinding::bind(int os_index) {
  STRATA_ASSIGN_OR_RETURN(TopologyPtr topo, load(false));
  if (os_index < 0 || hwloc_get_numanode_obj_by_os_index(topo.get(), static_cast<unsigned>(os_index)) == nullptr)
    return Status(StatusCode::kUnsupported, "binding memory to NUMA node " + std::to_string(os_index) +
                                                ": this machine has no such node");
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  hwloc_bitmap_only(set, static_cast<unsigned>(os_index));
  const int rc = hwloc_set_membind(topo.get(), set, HWLOC_MEMBIND_BIND,
                                   HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET);
  const int err = errno;
  hwloc_bitmap_free(set);
  if (rc != 0)
    return Status(StatusCode::kUnsupported,
                  "binding memory to NUMA node " + std::to_string(os_index) + ": " + std::strerror(err), err);
  std::unique_ptr<ThreadMemoryBinding> b(new ThreadMemoryBinding());
  b->state_ = std::make_unique<State>();
  b->state_->topo = std::move(topo);
  return b;
}

ThreadMemoryBinding::~ThreadMemoryBinding() {
  if (!state_) return;
  hwloc_topology_t t = state_->topo.get();
  hwloc_set_membind(t, hwloc_topology_get_complete_nodeset(t), HWLOC_MEMBIND_DEFAULT,
                    HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET);
}

Result<std::vector<int>> parse_cpu_list(std::string_view list) {
  std::vector<int> out;
  auto number = [&](std::string_view t, int* v) {
    if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string_view::npos) return false;
    *v = std::atoi(std::string(t).c_str());
    return true;
  };
  size_t at = 0;
  while (at < list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view part = list.substr(at, comma - at);
    const size_t dash = part.find('-');
    int lo = 0, hi = 0;
    const bool ok = dash == std::string_view::npos
                        ? number(part, &lo) && (hi = lo, true)
                        : number(part.substr(0, dash), &lo) && number(part.substr(dash + 1), &hi);
    if (!ok || hi < lo)
      return invalid_argument("CPU list '" + std::string(list) + "': '" + std::string(part) +
                              "' is not a CPU or a range like 0-15");
    for (int c = lo; c <= hi; ++c) out.push_back(c);
    at = comma + 1;
  }
  if (out.empty()) return invalid_argument("CPU list '" + std::string(list) + "' names no CPU");
  return out;
}

}  // namespace strata::storage
