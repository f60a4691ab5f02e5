// Lanes on the CUDA runtime: two copy streams beside the backend's compute stream, pooled events
// for cross-lane ordering, timing-event pairs resolved against a chain of epoch events for trace
// spans, and device/pinned allocations that report kOutOfMemory instead of aborting.
#include "cuda/lanes.h"
#include "cuda/rows.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <utility>

#include "common/units.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_check.h"
#include "cuda/device_guard.h"

namespace strata::cuda {
namespace {

// A span's start is resolved as the time of an epoch event plus the float milliseconds between
// them; a float keeps ~0.25 us at 2 s, so a new epoch is chained on every this many seconds.
constexpr double kEpochInterval_s = 2.0;

// Reusable CUDA events of one kind (flags) on one device, so that recording in a hot loop creates
// none. Shared by the Lanes and every Event handle it gave out, so handles may outlive the Lanes.
// Thread safe.
class EventPool : public std::enable_shared_from_this<EventPool> {
 public:
  EventPool(int device, unsigned flags) : device_(device), flags_(flags) {}
  ~EventPool() {
    for (cudaEvent_t e : free_)
      if (cudaEventDestroy(e) != cudaSuccess) cudaGetLastError();  // runtime already torn down
  }

  cudaEvent_t acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        cudaEvent_t e = free_.back();
        free_.pop_back();
        return e;
      }
    }
    DeviceGuard guard(device_);
    STRATA_CUDA_CHECK(guard.error());
    cudaEvent_t e = nullptr;
    STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags_));
    return e;
  }
  void release(cudaEvent_t e) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(e);
  }
  // An owning handle: the event goes back to the pool when the last copy goes.
  std::shared_ptr<void> handle(cudaEvent_t e) {
    std::shared_ptr<EventPool> self = shared_from_this();
    return std::shared_ptr<void>(static_cast<void*>(e),
                                 [self](void* p) { self->release(static_cast<cudaEvent_t>(p)); });
  }

 private:
  int device_;
  unsigned flags_;
  std::mutex mu_;
  std::vector<cudaEvent_t> free_;
};

cudaEvent_t event_of(const std::shared_ptr<void>& h) { return static_cast<cudaEvent_t>(h.get()); }

// Milliseconds from a to b, both complete.
double elapsed_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

// true when complete. A device fault also reads false: the span never resolves, and the fault
// surfaces where the runtime waits (host_wait, synchronize) rather than in tracing.
bool query(cudaEvent_t e) {
  const cudaError_t r = cudaEventQuery(e);
  if (r == cudaSuccess) return true;
  if (r != cudaErrorNotReady) cudaGetLastError();
  return false;
}

// A timing event whose host-clock time is known once it and its parent have completed.
struct Epoch {
  std::shared_ptr<void> event;
  std::shared_ptr<Epoch> parent;  // dropped once resolved
  bool resolved = false;
  double time_s = 0;  // on the Lanes' host clock, when resolved
};

// Resolves `e` and any unresolved epochs before it; false while one of them is pending.
bool resolve(const std::shared_ptr<Epoch>& e) {
  std::vector<Epoch*> chain;  // newest first
  for (Epoch* p = e.get(); p != nullptr && !p->resolved; p = p->parent.get()) chain.push_back(p);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    Epoch* p = *it;
    STRATA_CHECK(p->parent != nullptr, "trace epoch without a resolved ancestor");
    if (!query(event_of(p->event))) return false;
    p->time_s =
        p->parent->time_s + elapsed_ms(event_of(p->parent->event), event_of(p->event)) / 1e3;
    p->resolved = true;
    p->parent.reset();
  }
  return true;
}

}  // namespace

struct Lanes::Impl {
  struct OpenSpan {
    std::string name;
    uint64_t bytes = 0;
    std::shared_ptr<void> start;
    std::shared_ptr<Epoch> epoch;
  };
  struct PendingSpan {
    OpenSpan open;
    std::shared_ptr<void> end;
  };

  CudaBackend* backend = nullptr;
  int device = 0;
  bool timing = false;
  cudaStream_t h2d = nullptr;
  cudaStream_t d2h = nullptr;
  cudaStream_t epoch_stream = nullptr;  // never given work: an epoch event completes at once
  std::shared_ptr<EventPool> order_events;
  std::shared_ptr<EventPool> timing_events;
  std::chrono::steady_clock::time_point start;

  std::mutex spans_mu;  // guards everything below
  std::shared_ptr<Epoch> epoch;
  double epoch_recorded_s = 0;  // host time the newest epoch was recorded
  std::vector<OpenSpan> open[kNumLanes];
  std::deque<PendingSpan> pending[kNumLanes];  // in stream order

  std::atomic<uint64_t> peak_bytes{0};

  cudaStream_t stream(Lane lane) {
    switch (lane) {
      case Lane::kCompute:
        return backend->stream();  // launches any op the backend holds back first
      case Lane::kH2d:
        return h2d;
      case Lane::kD2h:
        return d2h;
    }
    STRATA_CHECK(false, "lanes: unknown lane " + std::to_string(static_cast<int>(lane)));
    return nullptr;
  }

  double now_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // A new epoch on the idle stream, chained to the current one. Caller holds spans_mu.
  void chain_epoch() {
    auto e = std::make_shared<Epoch>();
    e->event = timing_events->handle(timing_events->acquire());
    e->parent = epoch;
    STRATA_CUDA_CHECK(cudaEventRecord(event_of(e->event), epoch_stream));
    epoch_recorded_s = now_s();
    epoch = std::move(e);
  }
};

Result<std::unique_ptr<Lanes>> Lanes::create(compute::Backend& compute, bool timing) {
  CudaBackend* backend = as_cuda(compute);
  if (backend == nullptr)
    return invalid_argument("lanes: the compute backend is '" + compute.name() +
                            "', not CUDA; GPU lanes need the CUDA backend (--device cuda)");
  cudaStream_t compute_stream = backend->stream();
  int device = 0;
#if CUDART_VERSION >= 12080
  STRATA_CUDA_CHECK(cudaStreamGetDevice(compute_stream, &device));
#else
  (void)compute_stream;
  STRATA_CUDA_CHECK(cudaGetDevice(&device));  // the backend made its device current
#endif
  DeviceGuard guard(device);
  STRATA_CUDA_CHECK(guard.error());

  std::unique_ptr<Lanes> lanes(new Lanes());
  lanes->impl_ = std::make_unique<Impl>();
  Impl& m = *lanes->impl_;
  m.backend = backend;
  m.device = device;
  m.timing = timing;
  int least = 0, greatest = 0;
  STRATA_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // Weights for the next layer are on the critical path: h2d gets the highest priority.
  STRATA_CUDA_CHECK(cudaStreamCreateWithPriority(&m.h2d, cudaStreamNonBlocking, greatest));
  STRATA_CUDA_CHECK(cudaStreamCreateWithPriority(&m.d2h, cudaStreamNonBlocking, least));
  // Ordering events never time; blocking sync lets a host_wait() sleep instead of spinning on a
  // core that CPU attention could use.
  m.order_events =
      std::make_shared<EventPool>(device, cudaEventDisableTiming | cudaEventBlockingSync);
  m.start = std::chrono::steady_clock::now();
  if (timing) {
    STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&m.epoch_stream, cudaStreamNonBlocking));
    m.timing_events = std::make_shared<EventPool>(device, cudaEventDefault);
    // The first epoch: the host time read right after the event is seen complete.
    auto e = std::make_shared<Epoch>();
    e->event = m.timing_events->handle(m.timing_events->acquire());
    STRATA_CUDA_CHECK(cudaEventRecord(event_of(e->event), m.epoch_stream));
    STRATA_CUDA_CHECK(cudaEventSynchronize(event_of(e->event)));
    e->time_s = m.now_s();
    e->resolved = true;
    m.epoch_recorded_s = e->time_s;
    m.epoch = std::move(e);
  }
  return lanes;
}

Lanes::~Lanes() {
  if (!impl_) return;
  Impl& m = *impl_;
  // Copies may still read or write caller memory: let them finish before the streams go.
  for (cudaStream_t s : {m.h2d, m.d2h, m.epoch_stream}) {
    if (s == nullptr) continue;
    if (cudaStreamSynchronize(s) != cudaSuccess) cudaGetLastError();
    if (cudaStreamDestroy(s) != cudaSuccess) cudaGetLastError();
  }
}

void Lanes::copy(Lane lane, void* dst, const void* src, size_t bytes) {
  STRATA_CHECK(lane != Lane::kCompute, "lanes: copy() runs on h2d or d2h; use copy_device()");
  if (bytes == 0) return;
  const cudaMemcpyKind kind = lane == Lane::kH2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, impl_->stream(lane)));
}

void Lanes::copy_2d(Lane lane, void* dst, size_t dst_pitch, const void* src, size_t src_pitch,
                    size_t row_bytes, size_t rows) {
  STRATA_CHECK(lane != Lane::kCompute, "lanes: copy_2d() runs on h2d or d2h");
  STRATA_CHECK(dst_pitch >= row_bytes && src_pitch >= row_bytes,
               "lanes: copy_2d pitches (" + std::to_string(dst_pitch) + ", " +
                   std::to_string(src_pitch) + ") are shorter than a row of " +
                   std::to_string(row_bytes) + " bytes");
  if (row_bytes == 0 || rows == 0) return;
  const cudaMemcpyKind kind = lane == Lane::kH2d ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  STRATA_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, kind,
                                      impl_->stream(lane)));
}

void Lanes::copy_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  STRATA_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, impl_->stream(Lane::kCompute)));
}

void Lanes::read_host(void* dst, const void* src, size_t bytes) {
  launch_copy_bytes(dst, src, bytes, impl_->stream(Lane::kCompute));
}

Event Lanes::record(Lane lane) {
  cudaEvent_t e = impl_->order_events->acquire();
  Event ev;
  ev.impl_ = impl_->order_events->handle(e);
  STRATA_CUDA_CHECK(cudaEventRecord(e, impl_->stream(lane)));
  return ev;
}

void Lanes::wait(Lane lane, const Event& e) {
  if (!e.valid()) return;
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(impl_->stream(lane), event_of(e.impl_), 0));
}

Status Lanes::host_wait(const Event& e) {
  if (!e.valid()) return Status::ok();
  const cudaError_t r = cudaEventSynchronize(event_of(e.impl_));
  if (r == cudaSuccess) return Status::ok();
  cudaGetLastError();
  return internal_error(std::string("lanes: waiting for GPU work failed: ") + cudaGetErrorName(r) +
                        ": " + cudaGetErrorString(r) +
                        " (a kernel or copy before it faulted; rerun with "
                        "CUDA_LAUNCH_BLOCKING=1 to find which)");
}

bool Lanes::done(const Event& e) {
  if (!e.valid()) return true;
  const cudaError_t r = cudaEventQuery(event_of(e.impl_));
  // An error is not "pending" either: host_wait() reports it.
  return r != cudaErrorNotReady;
}

Status Lanes::synchronize() {
  for (Lane lane : {Lane::kCompute, Lane::kH2d, Lane::kD2h}) {
    const cudaError_t r = cudaStreamSynchronize(impl_->stream(lane));
    if (r == cudaSuccess) continue;
    cudaGetLastError();
    return internal_error(std::string("lanes: synchronising the ") + lane_name(lane) +
                          " lane failed: " + cudaGetErrorName(r) + ": " + cudaGetErrorString(r));
  }
  return Status::ok();
}

void Lanes::begin(Lane lane, const std::string& name, uint64_t bytes) {
  Impl& m = *impl_;
  if (!m.timing) return;
  cudaStream_t s = m.stream(lane);
  Impl::OpenSpan span;
  span.name = name;
  span.bytes = bytes;
  span.start = m.timing_events->handle(m.timing_events->acquire());
  std::lock_guard<std::mutex> lock(m.spans_mu);
  if (m.now_s() - m.epoch_recorded_s > kEpochInterval_s) m.chain_epoch();
  span.epoch = m.epoch;
  STRATA_CUDA_CHECK(cudaEventRecord(event_of(span.start), s));
  m.open[static_cast<int>(lane)].push_back(std::move(span));
}

void Lanes::end(Lane lane) {
  Impl& m = *impl_;
  if (!m.timing) return;
  cudaStream_t s = m.stream(lane);
  std::shared_ptr<void> end = m.timing_events->handle(m.timing_events->acquire());
  std::lock_guard<std::mutex> lock(m.spans_mu);
  auto& open = m.open[static_cast<int>(lane)];
  STRATA_CHECK(!open.empty(),
               std::string("lanes: end() on the ") + lane_name(lane) + " lane without a begin()");
  STRATA_CUDA_CHECK(cudaEventRecord(event_of(end), s));
  m.pending[static_cast<int>(lane)].push_back({std::move(open.back()), std::move(end)});
  open.pop_back();
}

std::vector<LaneSpan> Lanes::take_spans() {
  Impl& m = *impl_;
  std::vector<LaneSpan> out;
  if (!m.timing) return out;
  std::lock_guard<std::mutex> lock(m.spans_mu);
  for (int l = 0; l < kNumLanes; ++l) {
    const size_t first = out.size();
    auto& q = m.pending[l];
    // Ends complete in stream order; a nested span's end comes before its parent's, so stop at
    // the first that is still pending.
    while (!q.empty()) {
      Impl::PendingSpan& p = q.front();
      if (!query(event_of(p.end)) || !resolve(p.open.epoch)) break;
      const cudaEvent_t start = event_of(p.open.start);
      LaneSpan s;
      s.lane = static_cast<Lane>(l);
      s.name = std::move(p.open.name);
      s.bytes = p.open.bytes;
      s.start_s = p.open.epoch->time_s + elapsed_ms(event_of(p.open.epoch->event), start) / 1e3;
      s.end_s = s.start_s + std::max(0.0, elapsed_ms(start, event_of(p.end))) / 1e3;
      out.push_back(std::move(s));
      q.pop_front();
    }
    // By start; of two that start together, the longer (an enclosing span) first.
    std::stable_sort(out.begin() + first, out.end(), [](const LaneSpan& a, const LaneSpan& b) {
      return a.start_s < b.start_s || (a.start_s == b.start_s && a.end_s > b.end_s);
    });
  }
  return out;
}

double Lanes::now_s() const { return impl_->now_s(); }

Result<Tensor> Lanes::allocate_device(DType dtype, Shape shape, const std::string& what) {
  STRATA_ASSIGN_OR_RETURN(const uint64_t elems, checked_numel(shape, what));
  const size_t bytes = static_cast<size_t>(elems) * dtype_size(dtype);
  const int device = impl_->device;
  DeviceGuard guard(device);
  STRATA_CUDA_CHECK(guard.error());
  void* p = nullptr;
  if (const cudaError_t r = cudaMalloc(&p, std::max<size_t>(bytes, 256)); r != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    return out_of_memory("cannot allocate " + format_bytes(bytes) + " of GPU memory for " + what +
                         " " + shape_string(shape) + " " + std::string(dtype_name(dtype)) +
                         " on GPU " + std::to_string(device) + " (" + format_bytes(free_b) +
                         " free of " + format_bytes(total_b) + "; " + cudaGetErrorName(r) +
                         "); give the GPU tier less (--gpu-mem) or use a smaller batch");
  }
  std::shared_ptr<void> owner(p, [device](void* q) {
    DeviceGuard g(device);
    if (cudaFree(q) != cudaSuccess) cudaGetLastError();  // runtime already torn down at exit
  });
  return Tensor::wrap(p, dtype, std::move(shape), MemoryKind::kGpu, std::move(owner));
}

Result<Tensor> Lanes::allocate_pinned(DType dtype, Shape shape, const std::string& what) {
  STRATA_ASSIGN_OR_RETURN(const uint64_t elems, checked_numel(shape, what));
  const size_t bytes = static_cast<size_t>(elems) * dtype_size(dtype);
  DeviceGuard guard(impl_->device);
  STRATA_CUDA_CHECK(guard.error());
  // The driver pools small pinned allocations at less than page alignment; O_DIRECT transfers
  // need 4 KiB, so ask for one page more and start at the first page boundary.
  constexpr size_t kPage = 4096;
  void* p = nullptr;
  if (const cudaError_t r = cudaHostAlloc(&p, std::max<size_t>(bytes, 64) + kPage, cudaHostAllocPortable);
      r != cudaSuccess) {
    cudaGetLastError();
    return out_of_memory("cannot allocate " + format_bytes(bytes) + " of pinned host memory for " +
                         what + " " + shape_string(shape) + " " + std::string(dtype_name(dtype)) +
                         " (" + cudaGetErrorName(r) +
                         ": the driver could not lock that much); give the CPU tier less "
                         "(--cpu-mem) or free host memory");
  }
  std::shared_ptr<void> owner(p, [](void* q) {
    if (cudaFreeHost(q) != cudaSuccess) cudaGetLastError();
  });
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + kPage - 1) / kPage * kPage);
  return Tensor::wrap(aligned, dtype, std::move(shape), MemoryKind::kPinned, std::move(owner));
}

int Lanes::device() const { return impl_->device; }

uint64_t Lanes::device_bytes_in_use() const {
  DeviceGuard guard(impl_->device);
  STRATA_CUDA_CHECK(guard.error());
  size_t free_b = 0, total_b = 0;
  STRATA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

void Lanes::sample_memory() {
  const uint64_t now = device_bytes_in_use();
  uint64_t seen = impl_->peak_bytes.load(std::memory_order_relaxed);
  while (now > seen && !impl_->peak_bytes.compare_exchange_weak(seen, now)) {
  }
}

uint64_t Lanes::peak_device_bytes() const {
  return impl_->peak_bytes.load(std::memory_order_relaxed);
}

}  // namespace strata::cuda
