// Executor: runs one step's actions (offload/plan.h) on their resources in dependency order. GPU
// actions are enqueued from the calling thread on the GPU's three in-order lanes (compute, h2d,
// d2h), each after the lane has been told to wait for its dependencies on other lanes; disk and
// CPU actions run as tasks on two worker threads, each task first waiting for its GPU
// dependencies and for the other worker. What an action does is its kind's Handler, given by the
// components that own the buffers it touches. Every way out of run(), success or the first error
// of a handler, a task or a lane, drains both workers and the lanes first, so no work outlives the
// step's data. Not thread safe: one run() at a time. Units: bytes, seconds.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"
#include "cuda/lanes.h"
#include "offload/action.h"
#include "offload/task_worker.h"

namespace strata::offload {

// A point in one GPU lane's work that other lanes and host threads can wait for. Opaque: only
// the GpuLanes that made it reads it. A default Marker is complete.
struct Marker {
  std::shared_ptr<void> handle;
};

// What the executor needs of the GPU: markers across its in-order lanes, trace spans, a clock.
// CudaGpuLanes (below) is the real one; tests use fakes.
class GpuLanes {
 public:
  virtual ~GpuLanes() = default;
  virtual Marker record(cuda::Lane lane) = 0;                   // at the lane's current end
  virtual void wait(cuda::Lane lane, const Marker& marker) = 0;  // later work on `lane` waits
  virtual Status host_wait(const Marker& marker) = 0;            // blocks the calling thread
  virtual Status synchronize() = 0;                              // every lane idle
  virtual void begin(cuda::Lane lane, const std::string& name) = 0;  // a trace span's start...
  virtual void end(cuda::Lane lane) = 0;                             // ... and end
  virtual double now_s() const = 0;  // the clock of spans
};

// GpuLanes over cuda::Lanes, which it does not own.
class CudaGpuLanes final : public GpuLanes {
 public:
  explicit CudaGpuLanes(cuda::Lanes& lanes) : lanes_(lanes) {}
  Marker record(cuda::Lane lane) override;
  void wait(cuda::Lane lane, const Marker& marker) override;
  Status host_wait(const Marker& marker) override;
  Status synchronize() override { return lanes_.synchronize(); }
  void begin(cuda::Lane lane, const std::string& name) override { lanes_.begin(lane, name); }
  void end(cuda::Lane lane) override { lanes_.end(lane); }
  double now_s() const override { return lanes_.now_s(); }

 private:
  cuda::Lanes& lanes_;
};

// The lane a GPU action runs on (compute for kGpu).
cuda::Lane lane_of(PlanResource resource);

// Work of one host action, run on its worker; returns the bytes it moved or read.
using HostTask = std::function<Result<uint64_t>()>;

// How one kind of action is carried out. GPU kinds set `enqueue`: put the work on `lane` (which
// already waits for the action's dependencies) and return the bytes it moves. Disk and CPU kinds
// set `task`: make the work the worker runs once the dependencies are done (it may capture what
// it needs of the step; the executor keeps the step alive until it has run).
struct Handler {
  std::function<Result<uint64_t>(const Action&, cuda::Lane)> enqueue;
  std::function<Result<HostTask>(const Action&)> task;
};
using Handlers = std::array<Handler, kNumActionKinds>;

// Told of each finished action, for accounting and traces. host_done runs on a worker thread.
class ExecutorObserver {
 public:
  virtual ~ExecutorObserver() = default;
  virtual void gpu_issued(const Action& action, uint64_t bytes) = 0;
  virtual void host_done(const Action& action, const std::string& name, double start_s,
                         double end_s, uint64_t bytes) = 0;
};

class Executor {
 public:
  // The workers run disk actions and CPU actions; each outlives the Executor's use of it.
  Executor(GpuLanes& gpu, TaskWorker& disk, TaskWorker& cpu) : gpu_(gpu), disk_(disk), cpu_(cpu) {}

  // Runs `plan` with `handlers`; returns once every action issued has finished, with the first
  // error (the ones after it are not issued).
  Status run(std::span<const Action> plan, const Handlers& handlers, ExecutorObserver& observer);

 private:
  Status issue(std::span<const Action> plan, const Handlers& handlers, ExecutorObserver& observer);
  Status issue_gpu(std::span<const Action> plan, size_t i, const Handler& handler,
                   ExecutorObserver& observer);
  Status issue_host(std::span<const Action> plan, size_t i, const Handler& handler,
                    ExecutorObserver& observer);
  TaskWorker* worker_of(ActionKind kind);

  GpuLanes& gpu_;
  TaskWorker& disk_;
  TaskWorker& cpu_;
  std::vector<Marker> done_;     // per action: its GPU marker
  std::vector<int64_t> ticket_;  // per action: its worker ticket (host actions), else -1
};

}  // namespace strata::offload
