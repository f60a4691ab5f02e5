// What CUDA devices this process can use. Safe to call in a build without CUDA (it reports none
// and says why) and on a machine without a GPU or driver. Thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strata::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  uint64_t total_memory = 0;  // bytes
  uint64_t free_memory = 0;   // bytes, at query time
  int multiprocessors = 0;
  std::string pci_bus_id;     // "0000:41:00.0"
  // The GPU's UUID as nvidia-smi -L prints it ("GPU-" then 32 hex digits in 8-4-4-4-12 groups);
  // unlike the index, it names the same card across reboots and CUDA_VISIBLE_DEVICES.
  std::string uuid;
};

struct DeviceQuery {
  bool built_with_cuda = false;
  std::string note;               // why no device is listed, when none is
  std::vector<DeviceInfo> devices;
};

DeviceQuery query_devices();

// Whether the CUDA backend's kernels may start while the kernel before them in the stream
// finishes (programmatic dependent launch, compute capability 9.0 and later; see
// src/cuda/chain.cuh). On by default; process-wide; the benchmarks turn it off to measure what
// it gains.
void set_chained_launches(bool on);
bool chained_launches();

// Whether the tensor-core decode attention merges the splits of a row's context through the
// shared memory of a thread-block cluster (compute capability 9.0 and later, at most 8 splits)
// instead of global memory and an arrival counter. On by default; process-wide; the benchmarks
// turn it off to measure what it gains.
void set_attention_cluster_merge(bool on);
bool attention_cluster_merge();

}  // namespace strata::cuda
