// The offload disk's side of `strata profile`: O_DIRECT requests through strata's I/O backend
// (io_uring, or its thread fallback) at the engine's queue depth, over a test file in the offload
// directory, at request sizes from tens of KiB to MiB, each split into ops the way the engine's
// run_io() splits it; per size the time per request is the steady-state time between completions
// (the queue full) per request, and latency + bytes / rate is fitted to them
// (planner::fit_fixed_plus_rate). The test file is created and removed here. Not thread safe.
// Units: bytes, seconds, GB/s (1e9 B/s).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "measure_common.h"
#include "planner/profile_fit.h"

namespace strata::tools {

struct DiskRequestOptions {
  std::filesystem::path dir;  // the offload directory (the drive measured)
  uint64_t file_bytes = uint64_t{256} << 20;
  std::vector<uint64_t> request_sizes = {64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20};
  int queue_depth = 64;  // ops in flight, as the offloading engine runs its I/O
  int repetitions = 1;   // passes per size and direction; the fastest counts
  // A pass issues requests (wrapping around the file) for at least the minimum, and at least four
  // queue depths of ops, and stops at the maximum; at a request's end either way.
  double min_seconds_per_pass = 0.1, max_seconds_per_pass = 1;
};
// What `strata profile` measures: quick as above, full with more sizes, passes and time.
DiskRequestOptions disk_request_options(bool quick, const std::filesystem::path& dir,
                                        uint64_t file_bytes);

struct DiskRequests {
  planner::FixedPlusRate read, write;  // seconds per request = fixed_s + bytes / rate
  std::vector<planner::TimedCall> read_samples, write_samples;  // x: request bytes
  std::string backend;                                          // "io_uring" or "threads"
  bool direct = true;  // O_DIRECT was in effect (false: the filesystem refused it)
  std::string text;    // the fits, their quality and their samples
};

// kInvalidArgument for bad options or a directory without room for the test file (it names the
// directory and the size); kIoError naming the file and offset of a failed request; a failed fit.
Result<DiskRequests> measure_disk_requests(const DiskRequestOptions& options, Logger& log,
                                           const ProgressFn& progress);

}  // namespace strata::tools
