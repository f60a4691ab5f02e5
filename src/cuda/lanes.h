// Lanes: the GPU side of the offloading runtime. Three in-order lanes (the compute stream of a
// CUDA backend, a host-to-device copy stream and a device-to-host copy stream), events that order
// work across lanes without a device-wide synchronise, async copies between pinned host memory and
// the device (1-D and strided 2-D), device buffers outside the backend's activation pool, and
// per-lane busy time from timing events for traces. No CUDA header here: in a build without CUDA,
// Lanes::create() fails with kUnsupported. Enqueueing is thread safe per copy lane (one thread
// issues on a lane at a time is the expected use); the compute lane is the backend's stream, so
// only the thread that issues backend ops may use it. Event objects are values (copyable handles
// that may outlive the Lanes). Units: bytes, seconds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"

namespace strata::cuda {

enum class Lane : uint8_t { kCompute = 0, kH2d = 1, kD2h = 2 };
inline constexpr int kNumLanes = 3;
// "gpu", "h2d", "d2h".
inline const char* lane_name(Lane lane) {
  switch (lane) {
    case Lane::kCompute:
      return "gpu";
    case Lane::kH2d:
      return "h2d";
    case Lane::kD2h:
      return "d2h";
  }
  return "?";
}

// A point in one lane's work. A default-constructed Event is "already complete".
class Event {
 public:
  Event() = default;
  bool valid() const { return impl_ != nullptr; }

 private:
  friend class Lanes;
  std::shared_ptr<void> impl_;  // the CUDA event, destroyed when the last handle goes
};

// One finished span of lane work, for traces: seconds since Lanes::create().
struct LaneSpan {
  Lane lane = Lane::kCompute;
  std::string name;
  double start_s = 0;
  double end_s = 0;
  uint64_t bytes = 0;  // copies: bytes moved; compute: 0
};

class Lanes {
 public:
  // `compute` must be a CUDA backend (its stream is the compute lane). With `timing`, begin()/end()
  // pairs record timing events so spans() can report when each piece of work ran.
  static Result<std::unique_ptr<Lanes>> create(compute::Backend& compute, bool timing);
  ~Lanes();
  Lanes(const Lanes&) = delete;
  Lanes& operator=(const Lanes&) = delete;

  // Async copies on a copy lane. Host memory must be pinned (cudaHostAlloc or registered) for the
  // copy to overlap; pageable memory still works, synchronously. h2d: dst device, src host.
  void copy(Lane lane, void* dst, const void* src, size_t bytes);
  // Copies `rows` rows of `row_bytes` bytes with the given pitches (cudaMemcpy2DAsync).
  void copy_2d(Lane lane, void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
               size_t row_bytes, size_t rows);
  // A copy on the compute lane, in order with the ops around it: device to device, or a small
  // transfer to or from pinned host memory that the next op needs (the direction is taken from
  // the pointers).
  void copy_device(void* dst, const void* src, size_t bytes);
  // The same for pinned host memory read into device memory, by a kernel's loads on the compute
  // lane (unified addressing maps pinned memory): it does not wait behind the copy lanes'
  // transfers on the copy engines.
  void read_host(void* dst, const void* src, size_t bytes);

  // An event at the current end of `lane`.
  Event record(Lane lane);
  // Work enqueued on `lane` after this waits for `e` (on the GPU; the host does not block).
  void wait(Lane lane, const Event& e);
  // Blocks the calling thread (sleeping, not spinning) until `e` has completed. kInternal with
  // the CUDA error on failure.
  Status host_wait(const Event& e);
  // Non-blocking query: false while `e` is pending. A device fault also reads true (not pending);
  // host_wait() then reports it.
  bool done(const Event& e);
  // Blocks until every lane is idle.
  Status synchronize();

  // Trace spans: marks the start and end of a named piece of work on `lane` (no-ops without
  // timing). Spans are read back by spans() once their end events have completed.
  void begin(Lane lane, const std::string& name, uint64_t bytes = 0);
  void end(Lane lane);
  // Every span whose events have completed since the last call, in lane order then time order;
  // spans still running stay for a later call. GPU times are aligned to the host clock of now_s()
  // through an epoch event recorded at create() (and chained every few seconds, so a span's time
  // keeps sub-microsecond resolution on long runs).
  std::vector<LaneSpan> take_spans();
  // Seconds since create() on the host clock the spans use.
  double now_s() const;
  // The CUDA device index the lanes run on.
  int device() const;

  // Device memory outside the backend's activation cache: kOutOfMemory naming `what` and the
  // bytes when it does not fit. Freed when the last tensor sharing it goes.
  Result<Tensor> allocate_device(DType dtype, Shape shape, const std::string& what);
  // Pinned host memory (cudaHostAlloc, portable), 4 KiB aligned (O_DIRECT transfers need it):
  // kOutOfMemory naming `what` when the driver cannot lock that much.
  Result<Tensor> allocate_pinned(DType dtype, Shape shape, const std::string& what);

  // Device memory in use now (total - free from cudaMemGetInfo: every process on the GPU, this
  // one's CUDA context included), and the most seen by any call to sample_memory().
  uint64_t device_bytes_in_use() const;
  void sample_memory();
  uint64_t peak_device_bytes() const;

 private:
  Lanes() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::cuda
