#include "offload/executor.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/check.h"

namespace strata::offload {

namespace {

const cuda::Event& event_of(const Marker& m) { return *static_cast<const cuda::Event*>(m.handle.get()); }

}  // namespace

Marker CudaGpuLanes::record(cuda::Lane lane) {
  return Marker{std::make_shared<cuda::Event>(lanes_.record(lane))};
}

void CudaGpuLanes::wait(cuda::Lane lane, const Marker& marker) {
  if (marker.handle) lanes_.wait(lane, event_of(marker));
}

Status CudaGpuLanes::host_wait(const Marker& marker) {
  return marker.handle ? lanes_.host_wait(event_of(marker)) : Status::ok();
}

cuda::Lane lane_of(PlanResource resource) {
  if (resource == PlanResource::kH2d) return cuda::Lane::kH2d;
  return resource == PlanResource::kD2h ? cuda::Lane::kD2h : cuda::Lane::kCompute;
}

TaskWorker* Executor::worker_of(ActionKind kind) {
  const PlanResource r = resource_of(kind);
  if (r == PlanResource::kDisk) return &disk_;
  return r == PlanResource::kCpu ? &cpu_ : nullptr;
}

Status Executor::run(std::span<const Action> plan, const Handlers& handlers,
                     ExecutorObserver& observer) {
  done_.assign(plan.size(), Marker{});
  ticket_.assign(plan.size(), -1);
  // The workers may still run tasks that point into the step: every way out drains them.
  const Status issued = issue(plan, handlers, observer);
  const Status cpu_done = cpu_.drain();
  const Status disk_done = disk_.drain();
  const Status gpu_done = gpu_.synchronize();
  for (const Status* st : {&issued, &disk_done, &cpu_done, &gpu_done})
    if (!st->is_ok()) return *st;
  return Status::ok();
}

Status Executor::issue(std::span<const Action> plan, const Handlers& handlers,
                       ExecutorObserver& observer) {
  for (size_t i = 0; i < plan.size(); ++i) {
    const Handler& h = handlers[static_cast<size_t>(plan[i].kind)];
    STRATA_RETURN_IF_ERROR(worker_of(plan[i].kind) ? issue_host(plan, i, h, observer)
                                                   : issue_gpu(plan, i, h, observer));
  }
  return Status::ok();
}

// A GPU action waits for host work here, and for other lanes on the GPU.
Status Executor::issue_gpu(std::span<const Action> plan, size_t i, const Handler& handler,
                           ExecutorObserver& observer) {
  const Action& a = plan[i];
  const cuda::Lane lane = lane_of(resource_of(a.kind));
  for (int32_t d : a.deps) {
    if (TaskWorker* w = worker_of(plan[d].kind)) {
      STRATA_RETURN_IF_ERROR(w->wait(ticket_[d]));
    } else if (lane_of(resource_of(plan[d].kind)) != lane) {
      gpu_.wait(lane, done_[d]);
    }
  }
  STRATA_CHECK(static_cast<bool>(handler.enqueue), "offload: nothing runs " + describe(a));
  gpu_.begin(lane, describe(a));
  Result<uint64_t> moved = handler.enqueue(a, lane);
  gpu_.end(lane);
  STRATA_RETURN_IF_ERROR(moved.status());
  done_[i] = gpu_.record(lane);
  observer.gpu_issued(a, *moved);
  return Status::ok();
}

// A host action's task waits, on its worker, for the GPU markers and the other worker's tasks it
// depends on; the tasks before it on its own worker have run already.
Status Executor::issue_host(std::span<const Action> plan, size_t i, const Handler& handler,
                            ExecutorObserver& observer) {
  const Action* a = &plan[i];
  TaskWorker* self = worker_of(a->kind);
  std::vector<Marker> markers;
  TaskWorker* other = nullptr;
  int64_t other_ticket = -1;
  for (int32_t d : a->deps) {
    TaskWorker* w = worker_of(plan[d].kind);
    if (!w) {
      markers.push_back(done_[d]);
    } else if (w != self) {
      other = w;
      other_ticket = std::max(other_ticket, ticket_[d]);
    }
  }
  STRATA_CHECK(static_cast<bool>(handler.task), "offload: nothing runs " + describe(*a));
  STRATA_ASSIGN_OR_RETURN(HostTask work, handler.task(*a));
  ticket_[i] = self->submit([this, a, &observer, markers = std::move(markers), other, other_ticket,
                             work = std::move(work)]() -> Status {
    if (other) STRATA_RETURN_IF_ERROR(other->wait(other_ticket));
    for (const Marker& m : markers) STRATA_RETURN_IF_ERROR(gpu_.host_wait(m));
    const double t0 = gpu_.now_s();
    STRATA_ASSIGN_OR_RETURN(uint64_t bytes, work());
    observer.host_done(*a, describe(*a), t0, gpu_.now_s(), bytes);
    return Status::ok();
  });
  return Status::ok();
}

}  // namespace strata::offload
