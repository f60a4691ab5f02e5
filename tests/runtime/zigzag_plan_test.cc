#include "runtime/zigzag_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace strata::runtime {
namespace {

StepShape shape(int32_t layers, int32_t batches, bool prefill, bool stream_all, bool cpu_kv,
                bool disk = false) {
  StepShape s;
  s.num_layers = layers;
  s.num_batches = batches;
  s.prefill = prefill;
  s.batch_active.assign(batches, true);
  s.streamed.assign(layers + 1, stream_all);
  s.from_disk.assign(layers + 1, disk);
  s.cpu_kv.assign(static_cast<size_t>(layers) * batches, cpu_kv);
  return s;
}

int count(const std::vector<Action>& plan, ActionKind kind) {
  return static_cast<int>(std::count_if(plan.begin(), plan.end(),
                                        [&](const Action& a) { return a.kind == kind; }));
}

// Checks what every plan must satisfy: dependencies point backwards; each batch's hidden state
// goes through embed, then every layer in order, then the head; every compute on a streamed unit
// comes after all of that unit's load parts; a load into a slot comes after (depends on) every
// compute of the unit that had the slot before.
void check_invariants(const StepShape& s, const std::vector<Action>& plan) {
  std::map<int32_t, std::vector<int32_t>> loads_of;       // unit -> load actions
  std::map<int32_t, int32_t> unit_in_slot;               // slot -> unit loaded last
  std::map<int32_t, std::set<int32_t>> users_of;         // unit -> compute actions so far
  std::vector<int32_t> next_layer(s.num_batches, -1);     // per batch: -1 before embed
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    for (int32_t d : a.deps) ASSERT_LT(d, static_cast<int32_t>(i)) << describe(a);
    const bool compute = a.kind == ActionKind::kLayer || a.kind == ActionKind::kPreAttention ||
                         a.kind == ActionKind::kPostAttention || a.kind == ActionKind::kHead;
    if (a.kind == ActionKind::kLoadWeights) {
      auto it = unit_in_slot.find(a.slot);
      if (it != unit_in_slot.end() && it->second != a.unit) {
        for (int32_t u : users_of[it->second])
          EXPECT_TRUE(std::count(a.deps.begin(), a.deps.end(), u)) << describe(a) << " misses " << describe(plan[u]);
      }
      unit_in_slot[a.slot] = a.unit;
      loads_of[a.unit].push_back(static_cast<int32_t>(i));
    }
    if (compute && s.streamed[a.unit]) {
      ASSERT_FALSE(loads_of[a.unit].empty()) << describe(a) << " before its weights";
      EXPECT_EQ(unit_in_slot[a.slot], a.unit) << describe(a) << " after its slot was reloaded";
      for (int32_t l : loads_of[a.unit])
        EXPECT_TRUE(std::count(a.deps.begin(), a.deps.end(), l)) << describe(a);
      users_of[a.unit].insert(static_cast<int32_t>(i));
    }
    if (a.kind == ActionKind::kEmbed) next_layer[a.batch] = 0;
    if (a.kind == ActionKind::kLayer || a.kind == ActionKind::kPostAttention) {
      EXPECT_EQ(next_layer[a.batch], a.unit) << describe(a);
      next_layer[a.batch] = a.unit + 1;
    }
    if (a.kind == ActionKind::kPreAttention) EXPECT_EQ(next_layer[a.batch], a.unit) << describe(a);
    if (a.kind == ActionKind::kHead) EXPECT_EQ(next_layer[a.batch], s.num_layers);
  }
}

TEST(ZigzagPlan, AllOnGpuIsLayerByLayerBatchByBatch) {
  const StepShape s = shape(3, 2, false, false, false);
  const auto plan = plan_step(s);
  std::vector<std::string> got;
  for (const auto& a : plan) got.push_back(describe(a));
  const std::vector<std::string> want = {"embed b0", "embed b1", "layer L0 b0", "layer L0 b1",
                                         "layer L1 b0", "layer L1 b1", "layer L2 b0",
                                         "layer L2 b1", "head L3 b0", "head L3 b1"};
  EXPECT_EQ(got, want);
  check_invariants(s, plan);
}

TEST(ZigzagPlan, StreamedWeightsRunTwoUnitsAheadSpreadOverTheBatches) {
  const StepShape s = shape(6, 4, false, true, false);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  EXPECT_EQ(count(plan, ActionKind::kLoadWeights), 7 * 4);  // 6 layers + head, 4 parts each
  // The first two units are loaded before any layer; after that no batch iteration issues more
  // than one part, and layer j's iterations load unit j + 2.
  size_t first_layer = 0;
  while (plan[first_layer].kind != ActionKind::kLayer) ++first_layer;
  std::set<int32_t> before;
  for (size_t i = 0; i < first_layer; ++i)
    if (plan[i].kind == ActionKind::kLoadWeights) before.insert(plan[i].unit);
  EXPECT_EQ(before, (std::set<int32_t>{0, 1}));
  int32_t layer = -1;
  for (size_t i = first_layer; i < plan.size(); ++i) {
    if (plan[i].kind == ActionKind::kLayer) {
      layer = plan[i].unit;
      // between two layer actions at most one load part
      size_t j = i + 1, loads = 0;
      while (j < plan.size() && plan[j].kind == ActionKind::kLoadWeights) ++loads, ++j;
      EXPECT_LE(loads, 1u) << describe(plan[i]);
    }
    if (plan[i].kind == ActionKind::kLoadWeights) EXPECT_EQ(plan[i].unit, layer + 2) << describe(plan[i]);
  }
}

TEST(ZigzagPlan, CpuAttentionOverlapsTheNextBatchOnTheGpu) {
  const StepShape s = shape(2, 2, false, false, true);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  std::vector<std::string> got;
  for (const auto& a : plan) got.push_back(describe(a));
  const std::vector<std::string> want = {
      "embed b0", "embed b1",
      "pre_attention L0 b0", "qkv_to_host L0 b0", "cpu_attention L0 b0",
      "pre_attention L0 b1", "qkv_to_host L0 b1", "cpu_attention L0 b1", "post_attention L0 b0",
      "pre_attention L1 b0", "qkv_to_host L1 b0", "cpu_attention L1 b0", "post_attention L0 b1",
      "pre_attention L1 b1", "qkv_to_host L1 b1", "cpu_attention L1 b1", "post_attention L1 b0",
      "post_attention L1 b1", "head L2 b0", "head L2 b1"};
  EXPECT_EQ(got, want);
}

TEST(ZigzagPlan, OneBatchWithCpuAttentionStillOrdersEachLayer) {
  const StepShape s = shape(3, 1, false, true, true);
  check_invariants(s, plan_step(s));
}

TEST(ZigzagPlan, PrefillStoresCpuKvThroughTwoAlternatingStagingBuffers) {
  const StepShape s = shape(2, 3, true, false, true);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  EXPECT_EQ(count(plan, ActionKind::kCpuAttention), 0);
  EXPECT_EQ(count(plan, ActionKind::kStoreKv), 6);
  std::vector<int32_t> stores;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].kind == ActionKind::kStoreKv) stores.push_back(static_cast<int32_t>(i));
    if (plan[i].kind == ActionKind::kLayer) {
      const int32_t n = static_cast<int32_t>(stores.size());
      EXPECT_EQ(plan[i].staging, n % 2);
      if (n >= 2) EXPECT_TRUE(std::count(plan[i].deps.begin(), plan[i].deps.end(), stores[n - 2]));
    }
  }
}

TEST(ZigzagPlan, DiskPartsAreReadIntoStagingBeforeTheirCopy) {
  const StepShape s = shape(5, 2, false, true, false, true);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  std::map<int32_t, int32_t> read_of;
  std::map<int32_t, int32_t> last_load_from_staging;  // staging -> last load action
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    if (a.kind == ActionKind::kDiskRead) {
      read_of[a.unit] = static_cast<int32_t>(i);
      auto it = last_load_from_staging.find(a.staging);
      if (it != last_load_from_staging.end())
        EXPECT_TRUE(std::count(a.deps.begin(), a.deps.end(), it->second)) << describe(a);
    }
    if (a.kind == ActionKind::kLoadWeights) {
      ASSERT_TRUE(read_of.count(a.unit)) << describe(a);
      EXPECT_TRUE(std::count(a.deps.begin(), a.deps.end(), read_of[a.unit]));
      last_load_from_staging[a.staging] = static_cast<int32_t>(i);
    }
  }
  EXPECT_EQ(count(plan, ActionKind::kDiskRead), 6);
}

TEST(ZigzagPlan, InactiveBatchesCostNothing) {
  StepShape s = shape(2, 3, false, true, true);
  s.batch_active = {true, false, true};
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  for (const auto& a : plan) EXPECT_NE(a.batch, 1) << describe(a);
  s.batch_active = {false, false, false};
  EXPECT_TRUE(plan_step(s).empty());
}

TEST(ZigzagPlan, EveryMixOfPlacementsAndSlotCountsKeepsTheInvariants) {
  for (int32_t slots : {2, 3, 4})
    for (int32_t batches : {1, 2, 3})
      for (bool prefill : {true, false})
        for (int mix = 0; mix < 4; ++mix) {
          StepShape s = shape(7, batches, prefill, false, false);
          s.slots = slots;
          // Every other layer streamed, a third of them from disk; KV on the CPU in a pattern.
          for (int32_t u = 0; u <= 7; ++u) {
            s.streamed[u] = (u + mix) % 2 == 0 || mix == 3;
            s.from_disk[u] = s.streamed[u] && (u + mix) % 3 == 0;
          }
          for (size_t i = 0; i < s.cpu_kv.size(); ++i) s.cpu_kv[i] = (i + mix) % 3 != 0;
          SCOPED_TRACE("slots " + std::to_string(slots) + ", batches " + std::to_string(batches) +
                       (prefill ? ", prefill" : ", decode") + ", mix " + std::to_string(mix));
          const auto plan = plan_step(s);
          check_invariants(s, plan);
          // Every streamed unit is loaded in full, each disk unit read once.
          int streamed = 0, disk = 0;
          for (int32_t u = 0; u <= 7; ++u) {
            streamed += s.streamed[u];
            disk += s.from_disk[u];
          }
          EXPECT_EQ(count(plan, ActionKind::kLoadWeights), streamed * batches);
          EXPECT_EQ(count(plan, ActionKind::kDiskRead), disk);
        }
}

TEST(ZigzagPlan, RejectsMalformedShapes) {
  StepShape s = shape(2, 2, false, true, false);
  s.slots = 1;
  EXPECT_FALSE(check_step_shape(s).is_ok());
  s = shape(2, 2, false, true, false);
  s.cpu_kv.pop_back();
  EXPECT_FALSE(check_step_shape(s).is_ok());
  s = shape(2, 2, false, false, false);
  s.from_disk[1] = true;
  EXPECT_FALSE(check_step_shape(s).is_ok());
}

// Durations of a decode step where PCIe (weight loads) binds: each layer's weights take 10 ms to
// load, the GPU 1 ms per batch, the CPU 4 ms per batch of attention.
double decode_durations(const Action& a, const void*) {
  switch (a.kind) {
    case ActionKind::kLoadWeights: return 10.0 / a.parts;
    case ActionKind::kPreAttention:
    case ActionKind::kPostAttention: return 0.5;
    case ActionKind::kQkvToHost: return 0.05;
    case ActionKind::kCpuAttention: return 4.0;
    case ActionKind::kLayer:
    case ActionKind::kHead: return 1.0;
    default: return 0.01;
  }
}

TEST(ZigzagPlan, OverlapKeepsTheBindingResourceBusy) {
  // 32 layers, 2 batches, weights streamed, KV on the CPU: h2d needs 33 x 10 ms, the CPU 32 x 8
  // ms, the GPU about 34 ms. A schedule without overlap would take their sum (~630 ms); the
  // zig-zag one must stay within the h2d time plus the prologue's first two loads (nothing can
  // run before layer 0's weights are in) and the last layer's tail.
  const StepShape s = shape(32, 2, false, true, true);
  const auto plan = plan_step(s);
  const Simulation sim = simulate(plan, decode_durations, nullptr);
  const double h2d = sim.busy[static_cast<int>(PlanResource::kH2d)];
  EXPECT_NEAR(h2d, 330.0, 1e-6);
  EXPECT_LT(sim.makespan, h2d + 10.0 + 10.0);
  EXPECT_GT(sim.busy[static_cast<int>(PlanResource::kCpu)] / sim.makespan, 0.7);
}

double cpu_bound_durations(const Action& a, const void*) {
  switch (a.kind) {
    case ActionKind::kLoadWeights: return 2.0 / a.parts;
    case ActionKind::kPreAttention:
    case ActionKind::kPostAttention: return 0.5;
    case ActionKind::kCpuAttention: return 6.0;
    default: return 0.05;
  }
}

TEST(ZigzagPlan, CpuAttentionRunsBackToBackWhenItBinds) {
  // The CPU binds (12 ms a layer); the GPU's 2 ms per layer must hide behind it: the CPU idles
  // only while the very first batch's queries are made and the last outputs are finished.
  const StepShape s = shape(16, 2, false, true, true);
  const Simulation sim = simulate(plan_step(s), cpu_bound_durations, nullptr);
  const double cpu = sim.busy[static_cast<int>(PlanResource::kCpu)];
  EXPECT_NEAR(cpu, 16 * 12.0, 1e-6);
  EXPECT_LT(sim.makespan, cpu + 2.0 + 0.5 + 2.0);
}

}  // namespace
}  // namespace strata::runtime
