// The CUDA host pinner, checked against what the CUDA runtime itself reports about an address
// (cudaPointerGetAttributes) and against copies from cudaMallocHost memory, the driver's own
// pinned allocation: a host arena pinned through the pinner must copy to the GPU at that rate.
// Tests that need a GPU skip without one; the failure paths run on any machine.
#include "cuda/host_pinner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/log.h"
#include "cuda_test_util.h"
#include "storage/host_arena.h"
#include "storage/topology.h"

#ifdef STRATA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace strata::cuda {
namespace {

// A Logger writing to a temporary file whose text the test reads back.
class CapturedLog {
 public:
  CapturedLog() : file_(std::tmpfile()), log_(LogLevel::kDebug, file_) {}
  ~CapturedLog() { std::fclose(file_); }
  Logger& logger() { return log_; }
  std::string text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) s.append(buf, n);
    return s;
  }

 private:
  std::FILE* file_;
  Logger log_;
};

// No machine has a GPU with this index: pinning for it fails in every build, GPU or not.
constexpr int kMissingDevice = 999;

TEST(CudaHostPinner, PinningForAMissingDeviceFailsAndTheArenaStaysPageable) {
  auto pinner = make_cuda_host_pinner(kMissingDevice);
  EXPECT_EQ(pinner->pinned_kind(), MemoryKind::kPinned);
  alignas(4096) static std::byte page[4096];
  Status s = pinner->pin(page, sizeof page);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.to_string();
  EXPECT_NE(s.message().find("4.00 KiB"), std::string::npos) << s.message();
#ifdef STRATA_HAVE_CUDA
  EXPECT_NE(s.message().find("GPU 999"), std::string::npos) << s.message();
#else
  EXPECT_NE(s.message().find("without CUDA"), std::string::npos) << s.message();
#endif

  CapturedLog log;
  storage::HostArenaOptions o;
  o.bytes = 2 << 20;
  o.pinner = pinner.get();
  auto arena = storage::HostArena::create(o, log.logger());
  ASSERT_TRUE(arena.is_ok()) << arena.status().to_string();
  EXPECT_FALSE((*arena)->pinned());
  EXPECT_EQ((*arena)->memory_kind(), MemoryKind::kHost);
  EXPECT_NE(log.text().find("pinning failed"), std::string::npos) << log.text();
  EXPECT_TRUE((*arena)->allocate(1 << 20).is_ok());
}

#ifdef STRATA_HAVE_CUDA

#define ASSERT_CUDA_OK(call)                                               \
  do {                                                                     \
    cudaError_t e_ = (call);                                               \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_); \
  } while (0)

cudaMemoryType memory_type(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return cudaMemoryTypeUnregistered;
  }
  return a.type;
}

TEST(CudaHostPinner, PinAndUnpinChangeWhatCudaReports) {
  STRATA_REQUIRE_GPU();
  constexpr size_t kBytes = size_t{4} << 20;
  std::unique_ptr<std::byte, decltype(&std::free)> buf(
      static_cast<std::byte*>(std::aligned_alloc(4096, kBytes)), &std::free);
  ASSERT_NE(buf, nullptr);
  std::memset(buf.get(), 1, kBytes);
  auto pinner = make_cuda_host_pinner(0);
  EXPECT_EQ(memory_type(buf.get()), cudaMemoryTypeUnregistered);

  Status s = pinner->pin(buf.get(), kBytes);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  cudaPointerAttributes a{};
  ASSERT_CUDA_OK(cudaPointerGetAttributes(&a, buf.get() + kBytes - 1));
  EXPECT_EQ(a.type, cudaMemoryTypeHost);
  EXPECT_NE(a.devicePointer, nullptr);  // registered as mapped

  // The same range again: CUDA refuses, and the message names the size and CUDA's error.
  Status again = pinner->pin(buf.get(), kBytes);
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument) << again.to_string();
  EXPECT_NE(again.message().find("4.00 MiB"), std::string::npos) << again.message();
  EXPECT_NE(again.message().find("cudaErrorHostMemoryAlreadyRegistered"), std::string::npos)
      << again.message();
  EXPECT_EQ(pinner->pin(nullptr, 0).code(), StatusCode::kInvalidArgument);

  pinner->unpin(buf.get(), kBytes);
  EXPECT_EQ(memory_type(buf.get()), cudaMemoryTypeUnregistered);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the pinner leaves no sticky error behind
}

// Best of 5 host-to-device copies of `bytes` from `src`, in GB/s.
double h2d_gbps(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream);  // warm-up
  float best_ms = 1e30f;
  for (int r = 0; r < 5; ++r) {
    cudaEventRecord(a, stream);
    cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream);
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    best_ms = std::min(best_ms, ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return static_cast<double>(bytes) / (best_ms / 1e3) / 1e9;
}

TEST(CudaHostPinner, PinnedArenaCopiesToTheGpuAtPinnedSpeed) {
  STRATA_REQUIRE_GPU();
  constexpr size_t kBytes = size_t{256} << 20;
  const DeviceQuery q = query_devices();
  auto topo = storage::query_topology(q.devices[0].pci_bus_id);
  ASSERT_TRUE(topo.is_ok()) << topo.status().to_string();

  CapturedLog log;
  auto pinner = make_cuda_host_pinner(0);
  storage::HostArenaOptions o;
  o.bytes = 2 * kBytes;
  o.numa_node = storage::preferred_numa_node(*topo);
  o.pinner = pinner.get();
  auto arena = storage::HostArena::create(o, log.logger());
  ASSERT_TRUE(arena.is_ok()) << arena.status().to_string();
  ASSERT_TRUE((*arena)->pinned()) << log.text();
  EXPECT_EQ((*arena)->memory_kind(), MemoryKind::kPinned);
  auto src = (*arena)->allocate(kBytes);
  auto back = (*arena)->allocate(kBytes);
  ASSERT_TRUE(src.is_ok() && back.is_ok());
  EXPECT_EQ(memory_type(src->data()), cudaMemoryTypeHost);
  EXPECT_EQ(memory_type(back->data() + kBytes - 1), cudaMemoryTypeHost);

  auto* words = reinterpret_cast<uint32_t*>(src->data());
  for (size_t i = 0; i < kBytes / 4; ++i) words[i] = static_cast<uint32_t>(i * 2654435761u);

  void* dev = nullptr;
  ASSERT_CUDA_OK(cudaMalloc(&dev, kBytes));
  std::unique_ptr<void, decltype(&cudaFree)> dev_owner(dev, &cudaFree);
  cudaStream_t stream;
  ASSERT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // The bytes arrive intact: arena -> GPU -> the arena's second piece.
  ASSERT_CUDA_OK(cudaMemcpyAsync(dev, src->data(), kBytes, cudaMemcpyHostToDevice, stream));
  ASSERT_CUDA_OK(cudaMemcpyAsync(back->data(), dev, kBytes, cudaMemcpyDeviceToHost, stream));
  ASSERT_CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_EQ(std::memcmp(src->data(), back->data(), kBytes), 0);

  // Mapped: the GPU reads the arena through its device address without a host-side copy.
  cudaPointerAttributes a{};
  ASSERT_CUDA_OK(cudaPointerGetAttributes(&a, src->data()));
  ASSERT_NE(a.devicePointer, nullptr);
  ASSERT_CUDA_OK(cudaMemset(dev, 0, kBytes));
  ASSERT_CUDA_OK(cudaMemcpy(dev, a.devicePointer, 1 << 20, cudaMemcpyDeviceToDevice));
  std::memset(back->data(), 0, 1 << 20);
  ASSERT_CUDA_OK(cudaMemcpy(back->data(), dev, 1 << 20, cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(src->data(), back->data(), 1 << 20), 0);

  // Speed against the driver's own pinned memory and against pageable memory.
  void* reference = nullptr;
  ASSERT_CUDA_OK(cudaMallocHost(&reference, kBytes));
  std::unique_ptr<void, decltype(&cudaFreeHost)> reference_owner(reference, &cudaFreeHost);
  std::memcpy(reference, src->data(), kBytes);
  std::unique_ptr<std::byte, decltype(&std::free)> pageable(
      static_cast<std::byte*>(std::aligned_alloc(4096, kBytes)), &std::free);
  std::memcpy(pageable.get(), src->data(), kBytes);

  const double arena_gbps = h2d_gbps(dev, src->data(), kBytes, stream);
  const double reference_gbps = h2d_gbps(dev, reference, kBytes, stream);
  const double pageable_gbps = h2d_gbps(dev, pageable.get(), kBytes, stream);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::printf(
      "host->GPU, 256 MiB copies: pinned arena %.1f GB/s, cudaMallocHost %.1f GB/s, "
      "pageable %.1f GB/s\n",
      arena_gbps, reference_gbps, pageable_gbps);
  RecordProperty("arena_h2d_gbps", std::to_string(arena_gbps));
  RecordProperty("cudamallochost_h2d_gbps", std::to_string(reference_gbps));
  RecordProperty("pageable_h2d_gbps", std::to_string(pageable_gbps));
  EXPECT_GE(arena_gbps, 0.8 * reference_gbps);
  EXPECT_GT(arena_gbps, pageable_gbps);
  cudaStreamDestroy(stream);
}

#endif  // STRATA_HAVE_CUDA

}  // namespace
}  // namespace strata::cuda
