// GPU figures for a hardware profile (`strata profile`): pinned host->GPU, GPU->host and
// both-at-once copy bandwidth with cudaMemcpyAsync on separate streams, cuBLAS fp16 GEMM rates at
// a prefill-sized and a decode-sized shape, and HBM bandwidth (roofline.h). Each call allocates
// and frees its own buffers; not for use while other GPU work runs. No CUDA header here.
// Units: GB/s (1e9 B/s), TFLOP/s.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace strata::cuda {

struct GpuLinkAndRates {
  std::string name;
  uint64_t memory_bytes = 0;
  double h2d_gbps = 0;         // pinned host -> GPU, alone
  double d2h_gbps = 0;         // pinned GPU -> host, alone
  double duplex_gbps = 0;      // each direction while both run
  double gemm_prefill_tflops = 0;  // fp16 [4096 x 8192] x [8192 x 8192]^T
  double gemm_decode_tflops = 0;   // fp16 [32 x 8192] x [8192 x 8192]^T
  double hbm_gbps = 0;         // device-to-device copy, bytes read plus written
};

// Measures device `device` with copies of `copy_bytes`; kUnsupported in a build without CUDA or
// without a usable device (the message says which).
Result<GpuLinkAndRates> measure_gpu_profile(int device, uint64_t copy_bytes);

}  // namespace strata::cuda
