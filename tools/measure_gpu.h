// The GPU's per-call side of `strata profile`, through the paths the offloading engine uses:
// batches of async copies between pinned host memory and the GPU on cuda::Lanes' copy lanes at
// sizes from KiB to tens of MiB (fitted to latency + bytes / rate per copy), and the CUDA
// backend's linear() over fp16 weights and over int4-g64 weights (made by
// cuda::quantise_int4_on_device, as the engine makes them) at rows per call from 1 to thousands
// (fitted to a rate curve). Each function needs a CUDA backend, allocates and frees its own
// buffers, and synchronises its stream; not for use while other GPU work runs. Without CUDA they
// return the backend's or the lanes' kUnsupported. Units: bytes, seconds, GB/s, TFLOP/s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "compute/backend.h"
#include "measure_common.h"
#include "planner/hardware.h"
#include "planner/profile_fit.h"

namespace strata::tools {

struct CopyOptions {
  std::vector<uint64_t> sizes = {4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20};
  uint64_t batch_bytes = 256 << 20;  // copies per batch: this many bytes' worth, 8 to 512 of them
  int repetitions = 5;               // batches per size and direction; the median counts
};
CopyOptions copy_options(bool quick);

struct CopyLatencies {
  planner::FixedPlusRate h2d, d2h;  // seconds per copy = fixed_s + bytes / rate
  std::vector<planner::TimedCall> h2d_samples, d2h_samples;
  std::string text;
};
// Copies on the h2d lane (pinned host -> device) and on the d2h lane, each alone.
Result<CopyLatencies> measure_copy_latencies(compute::Backend& cuda_backend,
                                             const CopyOptions& options,
                                             const ProgressFn& progress);

struct LinearOptions {
  int64_t out_features = 8192, in_features = 8192;  // the weight [N, K]
  std::vector<int64_t> rows = {1, 4, 16, 64, 256, 1024, 4096};
  double min_seconds = 0.005;  // calls per timed batch: enough to take this long
  int repetitions = 3;         // batches per point; the median counts
};
LinearOptions linear_options(bool quick);

struct LinearCurves {
  planner::RateCurve fp16, int4;
  std::vector<planner::TimedGemm> fp16_samples, int4_samples;
  double fp16_rms = 0, int4_rms = 0;
  std::string text;
};
Result<LinearCurves> measure_linear_curves(compute::Backend& cuda_backend,
                                           const LinearOptions& options,
                                           const ProgressFn& progress);

}  // namespace strata::tools
