// measure_machine: what `strata profile` measures, as a function the other commands can call (a
// missing profile is measured in quick mode before a run): DRAM and CPU rates, CPU attention per
// call, the offload disk's requests, and with a GPU its link and GEMM rates, its copies' latency,
// its linear layers by rows and the offloading engine's fixed cost per layer, each through
// strata's own kernels and engine paths, fitted with planner/profile_fit.h. The profile's `source`
// records every fit with its samples and its rms relative error. Not thread safe: it uses the
// whole machine (every core, the GPU, the disk) while it runs. Units: as planner/hardware.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "measure_common.h"
#include "planner/hardware.h"

namespace strata::tools {

struct MeasureOptions {
  bool quick = false;  // fewer points and repetitions: under a minute on a GPU machine
  std::filesystem::path offload_dir = ".";  // the disk measured (a test file goes there)
  int device = 0;                           // CUDA device
  bool skip_gpu = false;                    // measure no GPU even when there is one
  bool skip_disk = false;                   // measure no disk rates (capacity is still read)
  uint64_t disk_test_bytes = 0;             // the disk test file; 0: 256 MiB quick, 1 GiB full
  uint64_t dram_test_bytes = 0;             // the DRAM test buffer; 0: 256 MiB quick, 1 GiB full
  int threads = 0;                          // CPU threads; 0: every core
  std::string name;                         // the profile's name; empty: the host name
  ProgressFn progress;                      // sees "[stage/stages] what" and the points done
};

// The profile of this machine. Without a GPU (none present, or skip_gpu) gpu and links are left
// zero and the source says why: gpu_measured() tells. Errors name what failed: the offload
// directory, a disk request, a GPU allocation, an engine, a fit.
Result<planner::HardwareProfile> measure_machine(const MeasureOptions& options, Logger& log);

// Whether a profile from measure_machine holds GPU and link figures; and disk rates.
bool gpu_measured(const planner::HardwareProfile& p);
bool disk_measured(const planner::HardwareProfile& p);

}  // namespace strata::tools
