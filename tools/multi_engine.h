// `strata generate --devices`: one engine per device, each a child `strata generate --shard I/N
// --device D` on its shard of the job, started together by this process and merged when all have
// finished. A GPU's child is bound to the GPU's NUMA node (its CPUs, and its memory preferred
// there, pinned buffers included) before it starts. Budgets: --gpu-mem applies to each GPU;
// --cpu-mem is the whole host's DRAM budget, split evenly between the engines (its default,
// MemAvailable - 10%, likewise); --threads is split too. On the CPU several engines may share it
// (`--devices cpu,cpu`), which shows the sharding and merging without a GPU. Each child keeps its
// own resumable shard file, so after a failure the same command with --resume goes on. Not
// thread safe (it forks and waits).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "cuda/device.h"

namespace strata::tools {

struct EngineDevice {
  std::string device;     // "cpu" or "cuda:N"
  std::string pci_bus_id; // a GPU's, for its NUMA node
};

// "all" (every GPU), or a list of "cpu", "cuda:N" or "N" (a GPU index), e.g. "0,1" or "cpu,cpu".
// GPUs and the CPU do not mix (the device is part of the job's identity), and a GPU is named once.
Result<std::vector<EngineDevice>> parse_devices(const std::string& value, const std::vector<cuda::DeviceInfo>& gpus);

struct MultiEngineJob {
  std::vector<EngineDevice> devices;
  std::vector<std::string> generate_args;  // the parent's own generate flags, less those replaced per child
  std::string input, output;
  bool resume = false, overwrite = false, quiet = false;
  int threads = 0;           // all engines together (0: all cores)
  std::string cpu_mem;       // all engines together ("": the default)
  std::string json_summary;  // the combined summary ("": none)
  std::string sysfs = "/sys";
};

// This process's own command line (/proc/self/cmdline) after "generate", without the flags each
// child gets its own value of (--devices, --device, --threads, --cpu-mem, --json-summary).
Result<std::vector<std::string>> generate_args_for_children();

Status run_multi_engine(const MultiEngineJob& job);

}  // namespace strata::tools
