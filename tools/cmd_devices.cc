// strata devices: the CUDA devices this build can use.
#include <cstdio>

#include "commands.h"
#include "common/units.h"
#include "cuda/device.h"

namespace strata::tools {

void register_devices(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("devices", "List the CUDA devices strata can use");
  cmd->callback([exit_code] {
    cuda::DeviceQuery q = cuda::query_devices();
    std::printf("CUDA support: %s\n", q.built_with_cuda ? "built in" : "not built");
    for (const auto& d : q.devices)
      std::printf("  [%d] %s  sm_%d%d  %d SMs  %s total, %s free  PCI %s\n", d.index, d.name.c_str(),
                  d.compute_major, d.compute_minor, d.multiprocessors,
                  format_bytes(d.total_memory).c_str(), format_bytes(d.free_memory).c_str(),
                  d.pci_bus_id.c_str());
    if (q.devices.empty()) std::printf("  no devices: %s\n", q.note.c_str());
    *exit_code = 0;
  });
}

}  // namespace strata::tools
