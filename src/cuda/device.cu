#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>

#include "cuda/chain.cuh"
#include "cuda/device.h"

namespace strata::cuda {

namespace {

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi prints it.
std::string format_uuid(const cudaUUID_t& id) {
  std::string out = "GPU-";
  char hex[3];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(id.bytes[i]));
    out += hex;
  }
  return out;
}

}  // namespace

DeviceQuery query_devices() {
  DeviceQuery q;
  q.built_with_cuda = true;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    q.note = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return q;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.compute_major = prop.major;
    d.compute_minor = prop.minor;
    d.total_memory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    d.uuid = format_uuid(prop.uuid);
    char bus[32] = {};
    if (cudaDeviceGetPCIBusId(bus, sizeof bus, i) == cudaSuccess) d.pci_bus_id = bus;
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      d.free_memory = free_b;
    q.devices.push_back(std::move(d));
  }
  if (q.devices.empty()) q.note = "CUDA reports no devices";
  return q;
}

namespace {
std::atomic<bool> chained{true};
std::atomic<bool> cluster_merge{true};
__global__ void settle_kernel() {}
}  // namespace

void settle_weights(cudaStream_t stream) {
  settle_kernel<<<1, 1, 0, stream>>>();
  STRATA_CUDA_CHECK_LAUNCH();
}

void set_chained_launches(bool on) { chained.store(on, std::memory_order_relaxed); }
bool chained_launches() { return chained.load(std::memory_order_relaxed); }

void set_attention_cluster_merge(bool on) { cluster_merge.store(on, std::memory_order_relaxed); }
bool attention_cluster_merge() { return cluster_merge.load(std::memory_order_relaxed); }

bool chained_launch_available() { return chained_launches() && hopper_or_later(); }

bool hopper_or_later() {
  constexpr int kDevices = 64;
  static std::atomic<int> capable[kDevices] = {};  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kDevices) return false;
  int c = capable[dev].load(std::memory_order_relaxed);
  if (c == 0) {
    int major = 0;
    c = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
                major >= 9
            ? 2
            : 1;
    capable[dev].store(c, std::memory_order_relaxed);
  }
  return c == 2;
}

}  // namespace strata::cuda
