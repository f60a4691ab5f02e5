// `strata generate --devices`: one engine per device, each a child `strata generate --shard I/N
// --device D` on its shard of the job, started together by this process and merged when all have
// finished. A GPU's child is bound to the GPU's NUMA node (its CPUs, and its memory preferred
// there, pinned buffers included) before it starts. A GPU may be named more than once, one engine
// each (several engines of a small model on one big GPU). Budgets: --gpu-mem applies to each
// engine (gpu_mem_per_engine); --cpu-mem is the whole host's DRAM budget, split evenly between the
// engines (its default, MemAvailable - 10%, likewise); --threads is split too. On the CPU several
// engines may share it
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
  int gpu = -1;           // a GPU's index (-1: the CPU)
  uint64_t gpu_memory = 0;  // a GPU's total memory, bytes (0: the CPU, or not known)
};

// "all" (every GPU), or a list of "cpu", "cuda:N" or "N" (a GPU index), e.g. "0,1", "0,0" (two
// engines on GPU 0) or "cpu,cpu". GPUs and the CPU do not mix (the device is part of the job's
// identity).
Result<std::vector<EngineDevice>> parse_devices(const std::string& value, const std::vector<cuda::DeviceInfo>& gpus);

// Each engine's GPU budget in bytes, the --gpu-mem its child gets (0: none, the child's own
// default, the GPU's free memory - 1 GiB). `gpu_mem` is the job's --gpu-mem ("": not given), a
// budget for each engine: every GPU engine gets it, and an error (naming the GPU, its engines, the
// budget and what to do) when the engines named on a GPU would need more than the GPU's total
// memory. Without it, a GPU named once leaves its engine the default, and a GPU named K > 1 times
// gives each of its engines 90% of its total memory / K (engines started together would each see
// the same free memory). CPU engines get 0.
Result<std::vector<uint64_t>> gpu_mem_per_engine(const std::vector<EngineDevice>& devices,
                                                 const std::string& gpu_mem);

struct MultiEngineJob {
  std::vector<EngineDevice> devices;
  // The parent's own generate flags, less those replaced per child. On GPUs, a --gpu-mem among
  // them is each engine's budget: it is taken out and every child gets its own
  // (gpu_mem_per_engine).
  std::vector<std::string> generate_args;
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
