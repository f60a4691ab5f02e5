// The executor on fake GPU lanes (threads) and real workers: every action starts after each of its
// dependencies has finished, each resource runs its actions one at a time in plan order, resources
// overlap, and every failure (a task, a handler, a lane) stops the issue, drains everything issued
// and comes back as the step's error. No GPU.
#include "offload/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "offload/fake_gpu_lanes.h"
#include "offload/plan.h"

namespace strata::offload {
namespace {

using testing::FakeGpuLanes;

// When each action's work ran, on one clock of ticks.
struct Timeline {
  explicit Timeline(size_t n) : start(n), end(n) {
    for (size_t i = 0; i < n; ++i) start[i] = end[i] = -1;
  }
  std::atomic<int64_t> clock{0};
  std::vector<std::atomic<int64_t>> start, end;
  std::atomic<int> running{0};

  void run(size_t i, int micros) {
    ++running;
    start[i] = ++clock;
    if (micros > 0) std::this_thread::sleep_for(std::chrono::microseconds(micros));
    end[i] = ++clock;
    --running;
  }
};

class Counting final : public ExecutorObserver {
 public:
  void gpu_issued(const Action&, uint64_t bytes) override { gpu_bytes += bytes; }
  void host_done(const Action&, const std::string&, double start_s, double end_s, uint64_t bytes) override {
    EXPECT_LE(start_s, end_s);
    host_bytes += bytes;
  }
  std::atomic<uint64_t> gpu_bytes{0}, host_bytes{0};
};

// Handlers that record when each action runs (a few random microseconds of work each); the
// action at `fail_at` fails instead, in its handler (GPU) or its task (host).
Handlers recording(FakeGpuLanes& gpu, Timeline& t, const std::vector<Action>& plan, size_t fail_at = SIZE_MAX) {
  auto index = std::make_shared<std::map<const Action*, size_t>>();
  for (size_t i = 0; i < plan.size(); ++i) (*index)[&plan[i]] = i;
  auto micros = std::make_shared<std::vector<int>>(plan.size());
  std::mt19937 rng(5);
  for (auto& m : *micros) m = static_cast<int>(rng() % 200);
  Handlers h;
  for (auto& handler : h) {
    handler.enqueue = [&gpu, &t, index, micros, fail_at](const Action& a, cuda::Lane lane) -> Result<uint64_t> {
      const size_t i = index->at(&a);
      if (i == fail_at) return internal_error("the kernel of " + describe(a) + " could not start");
      gpu.enqueue(lane, [&t, i, micros] { t.run(i, (*micros)[i]); });
      return 2;
    };
    handler.task = [&t, index, micros, fail_at](const Action& a) -> Result<HostTask> {
      const size_t i = index->at(&a);
      return HostTask([&t, i, micros, fail_at]() -> Result<uint64_t> {
        if (i == fail_at) return io_error("the offload disk went away", 5);
        t.run(i, (*micros)[i]);
        return 3;
      });
    };
  }
  return h;
}

StepShape shape(int32_t layers, int32_t batches, bool prefill) {
  StepShape s;
  s.num_layers = layers;
  s.num_batches = batches;
  s.prefill = prefill;
  s.batch_active.assign(batches, true);
  s.streamed.assign(layers + 1, true);
  s.from_disk.assign(layers + 1, false);
  s.cpu_kv.assign(static_cast<size_t>(layers) * batches, false);
  s.disk_kv.assign(static_cast<size_t>(layers) * batches, false);
  for (size_t i = 0; i < s.cpu_kv.size(); ++i) (i % 3 == 0 ? s.disk_kv : s.cpu_kv)[i] = true;
  for (int32_t u = 0; u <= layers; u += 2) s.from_disk[u] = true;
  s.cpu_activations.assign(batches, false);
  s.cpu_activations[0] = true;
  return s;
}

std::vector<std::vector<Action>> plans() {
  std::vector<std::vector<Action>> out;
  for (bool prefill : {false, true})
    for (bool gpu_attention : {false, true}) {
      StepShape s = shape(4, 3, prefill);
      s.gpu_attention = gpu_attention;
      out.push_back(plan_step(s));
    }
  return out;
}

int resource_key(ActionKind kind) { return static_cast<int>(resource_of(kind)); }

TEST(Executor, EveryActionStartsAfterItsDependenciesAndEachResourceKeepsPlanOrder) {
  for (const auto& plan : plans()) {
    FakeGpuLanes gpu;
    TaskWorker disk("the offload disk"), cpu("attention on the CPU");
    Timeline t(plan.size());
    Counting seen;
    Executor executor(gpu, disk, cpu);
    ASSERT_TRUE(executor.run(plan, recording(gpu, t, plan), seen).is_ok());
    EXPECT_EQ(gpu.pending(), 0);
    std::map<int, size_t> last_on;  // resource -> its previous action
    uint64_t gpu_expected = 0, host_expected = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      ASSERT_GE(t.start[i].load(), 0) << describe(plan[i]) << " never ran";
      for (int32_t d : plan[i].deps)
        EXPECT_LT(t.end[d].load(), t.start[i].load()) << describe(plan[i]) << " started before " << describe(plan[d]) << " ended";
      const int r = resource_key(plan[i].kind);
      if (last_on.count(r)) {
        EXPECT_LT(t.end[last_on[r]].load(), t.start[i].load())
            << describe(plan[i]) << " overlapped the action before it on "
            << plan_resource_name(resource_of(plan[i].kind));
      }
      last_on[r] = i;
      const bool host = r == static_cast<int>(PlanResource::kDisk) || r == static_cast<int>(PlanResource::kCpu);
      (host ? host_expected : gpu_expected) += host ? 3 : 2;
    }
    EXPECT_EQ(seen.gpu_bytes.load(), gpu_expected);
    EXPECT_EQ(seen.host_bytes.load(), host_expected);
  }
}

// Two actions with no dependency between them, on the disk and on the GPU, must run at once: each
// waits (up to 20 s) for the other to have started.
TEST(Executor, IndependentActionsOnDifferentResourcesRunAtTheSameTime) {
  std::vector<Action> plan(2);
  plan[0].kind = ActionKind::kDiskRead;
  plan[0].unit = 0;
  plan[1].kind = ActionKind::kLayer;
  plan[1].unit = 0;
  plan[1].batch = 0;
  std::atomic<bool> disk_started{false}, gpu_started{false};
  std::atomic<bool> disk_saw_gpu{false}, gpu_saw_disk{false};
  auto await = [](std::atomic<bool>& flag) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!flag && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return flag.load();
  };
  FakeGpuLanes gpu;
  TaskWorker disk("the offload disk"), cpu("attention on the CPU");
  Handlers h;
  h[static_cast<size_t>(ActionKind::kDiskRead)].task = [&](const Action&) -> Result<HostTask> {
    return HostTask([&]() -> Result<uint64_t> {
      disk_started = true;
      disk_saw_gpu = await(gpu_started);
      return 0;
    });
  };
  h[static_cast<size_t>(ActionKind::kLayer)].enqueue = [&](const Action&, cuda::Lane lane) -> Result<uint64_t> {
    gpu.enqueue(lane, [&] {
      gpu_started = true;
      gpu_saw_disk = await(disk_started);
    });
    return 0;
  };
  Counting seen;
  ASSERT_TRUE(Executor(gpu, disk, cpu).run(plan, h, seen).is_ok());
  EXPECT_TRUE(disk_saw_gpu);
  EXPECT_TRUE(gpu_saw_disk);
}

// The first disk read fails: the step's error names it and the worker, nothing that depends on
// it runs, and when run() returns nothing is running anywhere.
TEST(Executor, AFailingTaskStopsTheStepAndDrainsEverything) {
  StepShape s = shape(4, 3, false);
  const std::vector<Action> plan = plan_step(s);
  size_t first_read = 0;
  while (plan[first_read].kind != ActionKind::kReadKv) ++first_read;
  FakeGpuLanes gpu;
  TaskWorker disk("the offload disk"), cpu("attention on the CPU");
  Timeline t(plan.size());
  Counting seen;
  const Status st = Executor(gpu, disk, cpu).run(plan, recording(gpu, t, plan, first_read), seen);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.to_string().find("the offload disk went away"), std::string::npos) << st.to_string();
  EXPECT_NE(st.to_string().find("the offload disk"), std::string::npos) << st.to_string();
  EXPECT_EQ(gpu.pending(), 0);
  EXPECT_EQ(t.running.load(), 0);
  for (size_t i = 0; i < plan.size(); ++i)
    for (int32_t d : plan[i].deps)
      if (static_cast<size_t>(d) == first_read) {
        EXPECT_EQ(t.start[i].load(), -1) << describe(plan[i]) << " ran";
      }
  // The workers take the next step after a failure has been seen.
  disk.clear_error();
  cpu.clear_error();
  Timeline again(plan.size());
  EXPECT_TRUE(Executor(gpu, disk, cpu).run(plan, recording(gpu, again, plan), seen).is_ok());
}

TEST(Executor, AFailingHandlerStopsTheIssueThere) {
  const std::vector<Action> plan = plan_step(shape(4, 3, true));
  size_t layer = 0;
  for (size_t i = 0, seen_layers = 0; i < plan.size(); ++i)
    if (plan[i].kind == ActionKind::kLayer && ++seen_layers == 4) layer = i;
  FakeGpuLanes gpu;
  TaskWorker disk("the offload disk"), cpu("attention on the CPU");
  Timeline t(plan.size());
  Counting seen;
  const Status st = Executor(gpu, disk, cpu).run(plan, recording(gpu, t, plan, layer), seen);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.to_string().find("could not start"), std::string::npos) << st.to_string();
  EXPECT_EQ(gpu.pending(), 0);
  EXPECT_EQ(t.running.load(), 0);
  for (size_t i = layer; i < plan.size(); ++i) EXPECT_EQ(t.start[i].load(), -1) << describe(plan[i]) << " ran after the failure";
  for (size_t i = 0; i < layer; ++i) EXPECT_NE(t.end[i].load(), -1) << describe(plan[i]) << " was issued but not finished";
}

// A fault on the GPU reaches the host through the markers its tasks wait for.
TEST(Executor, AGpuFaultReachesTheWorkersWaitingOnIt) {
  const std::vector<Action> plan = plan_step(shape(3, 2, false));
  FakeGpuLanes gpu;
  gpu.fail(cuda::Lane::kD2h, internal_error("an illegal address on the GPU"));
  TaskWorker disk("the offload disk"), cpu("attention on the CPU");
  Timeline t(plan.size());
  Counting seen;
  const Status st = Executor(gpu, disk, cpu).run(plan, recording(gpu, t, plan), seen);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.to_string().find("an illegal address on the GPU"), std::string::npos) << st.to_string();
  EXPECT_EQ(gpu.pending(), 0);
  EXPECT_EQ(t.running.load(), 0);
}

}  // namespace
}  // namespace strata::offload
