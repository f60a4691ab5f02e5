#include "offload/plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace strata::offload {
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

bool depends(const Action& a, int32_t on) { return std::count(a.deps.begin(), a.deps.end(), on) > 0; }

// What every plan must satisfy for KV off the GPU. Disk KV: in decode each unit is read once into
// a pinned staging buffer before its attention and written once after it, prefill KV is stored
// into the staging and written; a read into (or a prefill store to) a staging buffer waits for the
// write of the unit that had it before. Attention on the GPU over off-GPU KV: the KV is loaded into
// a GPU staging buffer before the layer (after the store of the unit that had that buffer) and the
// new rows are stored after it.
void check_kv_invariants(const StepShape& s, const std::vector<Action>& plan) {
  auto key = [&](const Action& a) { return static_cast<size_t>(a.unit) * s.num_batches + a.batch; };
  std::map<size_t, int32_t> read, load, attended, stored, written;
  std::map<int32_t, size_t> host_holder, gpu_holder;  // staging -> unit in it
  for (size_t n = 0; n < plan.size(); ++n) {
    const Action& a = plan[n];
    const auto i = static_cast<int32_t>(n);
    const bool disk = a.unit >= 0 && a.unit < s.num_layers && a.batch >= 0 && !s.disk_kv.empty() &&
                      s.disk_kv[key(a)];
    switch (a.kind) {
      case ActionKind::kReadKv:
        ASSERT_TRUE(disk) << describe(a);
        EXPECT_FALSE(s.prefill) << describe(a);
        EXPECT_FALSE(read.count(key(a))) << describe(a) << " twice";
        if (host_holder.count(a.host_staging)) {
          ASSERT_TRUE(written.count(host_holder[a.host_staging])) << describe(a) << " over an unwritten unit";
          EXPECT_TRUE(depends(a, written[host_holder[a.host_staging]])) << describe(a);
        }
        host_holder[a.host_staging] = key(a);
        read[key(a)] = i;
        break;
      case ActionKind::kLoadKv:
        EXPECT_TRUE(s.gpu_attention && !s.prefill) << describe(a);
        if (disk) {
          ASSERT_TRUE(read.count(key(a))) << describe(a);
          EXPECT_TRUE(depends(a, read[key(a)])) << describe(a);
          EXPECT_EQ(a.host_staging, plan[read[key(a)]].host_staging);
        }
        if (gpu_holder.count(a.staging)) {
          EXPECT_TRUE(depends(a, stored.at(gpu_holder[a.staging]))) << describe(a);
        }
        gpu_holder[a.staging] = key(a);
        load[key(a)] = i;
        break;
      case ActionKind::kCpuAttention:
        if (disk) {
          ASSERT_TRUE(read.count(key(a))) << describe(a);
          EXPECT_TRUE(depends(a, read[key(a)])) << describe(a);
          EXPECT_EQ(host_holder[a.host_staging], key(a)) << describe(a);
        }
        attended[key(a)] = i;
        break;
      case ActionKind::kLayer:
        if (a.staging >= 0 && !s.prefill) {
          ASSERT_TRUE(load.count(key(a))) << describe(a);
          EXPECT_TRUE(depends(a, load[key(a)])) << describe(a);
          EXPECT_EQ(gpu_holder[a.staging], key(a)) << describe(a);
        }
        if (a.staging >= 0 && s.prefill) {
          if (gpu_holder.count(a.staging)) {
            EXPECT_TRUE(depends(a, stored.at(gpu_holder[a.staging]))) << describe(a);
          }
          gpu_holder[a.staging] = key(a);
        }
        break;
      case ActionKind::kStoreKv:
        EXPECT_TRUE(s.prefill || s.gpu_attention) << describe(a);
        EXPECT_EQ(gpu_holder[a.staging], key(a)) << describe(a);
        if (disk && s.prefill) {
          if (host_holder.count(a.host_staging)) {
            EXPECT_TRUE(depends(a, written.at(host_holder[a.host_staging])));
          }
          host_holder[a.host_staging] = key(a);
        }
        if (disk) {
          EXPECT_EQ(host_holder[a.host_staging], key(a)) << describe(a);
        }
        stored[key(a)] = i;
        break;
      case ActionKind::kWriteKv:
        ASSERT_TRUE(disk) << describe(a);
        EXPECT_EQ(host_holder[a.host_staging], key(a)) << describe(a);
        if (attended.count(key(a))) {
          EXPECT_TRUE(depends(a, attended[key(a)])) << describe(a);
        } else {
          ASSERT_TRUE(stored.count(key(a))) << describe(a) << " before its rows are in the staging";
          EXPECT_TRUE(depends(a, stored[key(a)])) << describe(a);
        }
        EXPECT_FALSE(written.count(key(a))) << describe(a) << " twice";
        written[key(a)] = i;
        break;
      default:
        break;
    }
  }
  // Every active off-GPU unit went through its whole path once.
  for (int32_t j = 0; j < s.num_layers; ++j)
    for (int32_t b = 0; b < s.num_batches; ++b) {
      if (!s.batch_active[b]) continue;
      const size_t k = static_cast<size_t>(j) * s.num_batches + b;
      const bool disk = !s.disk_kv.empty() && s.disk_kv[k];
      const bool off = disk || s.cpu_kv[k];
      const bool gpu_path = s.prefill || s.gpu_attention;
      EXPECT_EQ(read.count(k), disk && !s.prefill ? 1u : 0u) << "L" << j << " b" << b;
      EXPECT_EQ(written.count(k), disk ? 1u : 0u) << "L" << j << " b" << b;
      EXPECT_EQ(stored.count(k), off && gpu_path ? 1u : 0u) << "L" << j << " b" << b;
      EXPECT_EQ(load.count(k), off && !s.prefill && s.gpu_attention ? 1u : 0u) << "L" << j << " b" << b;
      EXPECT_EQ(attended.count(k), off && !gpu_path ? 1u : 0u) << "L" << j << " b" << b;
    }
}

// What every plan must satisfy for hidden states on the CPU: each computation of such a batch
// (layer, queries, head) runs on a GPU staging buffer loaded for it, after the batch's previous
// store; each embed, layer and output half stores the result back; a load into a buffer waits for
// the last action of the batch that had the buffer before.
void check_hidden_invariants(const StepShape& s, const std::vector<Action>& plan) {
  std::map<int32_t, int32_t> last_store;                 // batch -> its latest kStoreHidden
  std::map<int32_t, std::pair<int32_t, int32_t>> loaded;  // batch -> (unit, load action)
  std::map<int32_t, int32_t> holder;                     // buffer -> batch
  std::map<int32_t, int32_t> last_on;                    // buffer -> latest action using it
  std::map<int32_t, int32_t> stores;                     // batch -> number of stores
  auto cpu = [&](int32_t b) { return b >= 0 && !s.cpu_activations.empty() && s.cpu_activations[b]; };
  for (size_t n = 0; n < plan.size(); ++n) {
    const Action& a = plan[n];
    const auto i = static_cast<int32_t>(n);
    if (!cpu(a.batch)) {
      EXPECT_NE(a.kind, ActionKind::kLoadHidden) << describe(a);
      EXPECT_NE(a.kind, ActionKind::kStoreHidden) << describe(a);
      EXPECT_EQ(a.hidden_staging, -1) << describe(a);
      continue;
    }
    switch (a.kind) {
      case ActionKind::kLoadHidden:
        ASSERT_TRUE(last_store.count(a.batch)) << describe(a) << " before anything was stored";
        EXPECT_TRUE(depends(a, last_store[a.batch])) << describe(a);
        if (holder.count(a.hidden_staging) && holder[a.hidden_staging] != a.batch) {
          EXPECT_TRUE(depends(a, last_on[a.hidden_staging])) << describe(a);
        }
        holder[a.hidden_staging] = a.batch;
        last_on[a.hidden_staging] = i;
        loaded[a.batch] = {a.unit, i};
        break;
      case ActionKind::kEmbed:
        if (holder.count(a.hidden_staging) && holder[a.hidden_staging] != a.batch) {
          EXPECT_TRUE(depends(a, last_on[a.hidden_staging])) << describe(a);
        }
        holder[a.hidden_staging] = a.batch;
        last_on[a.hidden_staging] = i;
        break;
      case ActionKind::kLayer:
      case ActionKind::kPreAttention:
      case ActionKind::kHead:
        ASSERT_TRUE(loaded.count(a.batch)) << describe(a);
        EXPECT_EQ(loaded[a.batch].first, a.unit) << describe(a) << " on another unit's hidden states";
        EXPECT_TRUE(depends(a, loaded[a.batch].second)) << describe(a);
        EXPECT_EQ(holder[a.hidden_staging], a.batch) << describe(a);
        last_on[a.hidden_staging] = i;
        break;
      case ActionKind::kPostAttention:
        EXPECT_EQ(holder[a.hidden_staging], a.batch) << describe(a) << ": its buffer was reloaded";
        last_on[a.hidden_staging] = i;
        break;
      case ActionKind::kStoreHidden:
        EXPECT_TRUE(depends(a, i - 1) || depends(a, last_on[a.hidden_staging])) << describe(a);
        EXPECT_EQ(holder[a.hidden_staging], a.batch) << describe(a);
        last_store[a.batch] = i;
        last_on[a.hidden_staging] = i;
        ++stores[a.batch];
        break;
      default:
        break;
    }
  }
  for (int32_t b = 0; b < s.num_batches; ++b)
    if (cpu(b) && s.batch_active[b]) {
      EXPECT_EQ(stores[b], s.num_layers + 1) << "batch " << b;
    }
}

// Layers with block_experts: each batch's action of the layer stops before the experts
// (defer_experts), one kExperts follows the last of them and depends on each, and each batch's
// next action (the next layer's first, or the head) adds its output (add_experts) and depends on
// it; no other action defers or adds.
void check_experts_invariants(const StepShape& s, const std::vector<Action>& plan) {
  auto block = [&](int32_t j) { return j >= 0 && j < s.num_layers && !s.block_experts.empty() && s.block_experts[j]; };
  std::map<int32_t, int32_t> experts_of;             // layer -> its kExperts
  std::map<std::pair<int32_t, int32_t>, int32_t> ends;  // (layer, batch) -> the action ending it
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    if (a.kind == ActionKind::kExperts) {
      ASSERT_TRUE(block(a.unit)) << describe(a);
      EXPECT_EQ(experts_of.count(a.unit), 0u) << describe(a) << " twice";
      experts_of[a.unit] = static_cast<int32_t>(i);
      for (int32_t b = 0; b < s.num_batches; ++b) {
        if (!s.batch_active[b]) continue;
        auto e = ends.find({a.unit, b});
        ASSERT_NE(e, ends.end()) << describe(a) << " before batch " << b << " reached it";
        EXPECT_TRUE(depends(a, e->second)) << describe(a) << " misses " << describe(plan[e->second]);
      }
    }
    const bool ends_layer = a.kind == ActionKind::kLayer || a.kind == ActionKind::kPostAttention;
    if (ends_layer) {
      ends[{a.unit, a.batch}] = static_cast<int32_t>(i);
      EXPECT_EQ(a.defer_experts, block(a.unit)) << describe(a);
    } else {
      EXPECT_FALSE(a.defer_experts) << describe(a);
    }
    const bool starts = a.kind == ActionKind::kLayer || a.kind == ActionKind::kPreAttention || a.kind == ActionKind::kHead;
    if (starts && block(a.unit - 1)) {
      EXPECT_TRUE(a.add_experts) << describe(a);
      ASSERT_EQ(experts_of.count(a.unit - 1), 1u) << describe(a) << " before the experts of L" << a.unit - 1;
      EXPECT_TRUE(depends(a, experts_of[a.unit - 1])) << describe(a);
    } else {
      EXPECT_FALSE(a.add_experts) << describe(a);
    }
  }
  const bool any = std::count(s.batch_active.begin(), s.batch_active.end(), true) > 0;
  for (int32_t j = 0; j < s.num_layers; ++j) {
    if (block(j) && any) EXPECT_EQ(experts_of.count(j), 1u) << "no experts for L" << j;
  }
}

// Checks what every plan must satisfy: dependencies point backwards; each batch's hidden state
// goes through embed, then every layer in order, then the head; every compute on a streamed unit
// comes after all of that unit's load parts; a load into a slot comes after (depends on) every
// compute of the unit that had the slot before.
void check_invariants(const StepShape& s, const std::vector<Action>& plan) {
  check_kv_invariants(s, plan);
  check_hidden_invariants(s, plan);
  check_experts_invariants(s, plan);
  std::map<int32_t, std::vector<int32_t>> loads_of;       // unit -> load actions
  std::map<int32_t, int32_t> unit_in_slot;               // slot -> unit loaded last
  std::map<int32_t, std::set<int32_t>> users_of;         // unit -> compute actions so far
  std::vector<int32_t> next_layer(s.num_batches, -1);     // per batch: -1 before embed
  for (size_t i = 0; i < plan.size(); ++i) {
    const Action& a = plan[i];
    for (int32_t d : a.deps) ASSERT_LT(d, static_cast<int32_t>(i)) << describe(a);
    const bool compute = a.kind == ActionKind::kLayer || a.kind == ActionKind::kPreAttention ||
                         a.kind == ActionKind::kPostAttention || a.kind == ActionKind::kHead ||
                         a.kind == ActionKind::kExperts;
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
    if (a.kind == ActionKind::kPreAttention) {
      EXPECT_EQ(next_layer[a.batch], a.unit) << describe(a);
    }
    if (a.kind == ActionKind::kHead) {
      EXPECT_EQ(next_layer[a.batch], s.num_layers);
    }
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
    if (plan[i].kind == ActionKind::kLoadWeights) {
      EXPECT_EQ(plan[i].unit, layer + 2) << describe(plan[i]);
    }
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
      if (n >= 2) {
        EXPECT_TRUE(std::count(plan[i].deps.begin(), plan[i].deps.end(), stores[n - 2]));
      }
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
      if (it != last_load_from_staging.end()) {
        EXPECT_TRUE(std::count(a.deps.begin(), a.deps.end(), it->second)) << describe(a);
      }
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
        for (int mix = 0; mix < 8; ++mix) {
          StepShape s = shape(7, batches, prefill, false, false);
          s.slots = slots;
          // Mixes 4-7: KV also on the disk, and attention over off-GPU KV on the GPU in 6 and 7.
          s.gpu_attention = mix >= 6;
          // Every other layer streamed, a third of them from disk; KV on the CPU in a pattern.
          for (int32_t u = 0; u <= 7; ++u) {
            s.streamed[u] = (u + mix) % 2 == 0 || mix == 3;
            s.from_disk[u] = s.streamed[u] && (u + mix) % 3 == 0;
          }
          for (size_t i = 0; i < s.cpu_kv.size(); ++i) s.cpu_kv[i] = (i + mix) % 3 != 0;
          if (mix >= 4) {
            s.disk_kv.assign(s.cpu_kv.size(), false);
            for (size_t i = 0; i < s.cpu_kv.size(); ++i) {
              s.disk_kv[i] = (i + mix) % 2 == 0 || mix == 5;
              if (s.disk_kv[i]) s.cpu_kv[i] = false;
            }
          }
          // Hidden states on the CPU for every other batch (all of them in mix 7).
          s.cpu_activations.assign(batches, false);
          for (int32_t b = 0; b < batches; ++b) s.cpu_activations[b] = (b + mix) % 2 == 1 || mix == 7;
          // A decode step of a mixture of experts with sparse and dense layers, the last sparse.
          if (!prefill && mix % 2 == 0) {
            s.block_experts.assign(7, false);
            for (int32_t j = 0; j < 7; ++j) s.block_experts[j] = j % 2 == 0 || mix == 4;
          }
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

StepShape kv_shape(int32_t layers, int32_t batches, bool prefill, bool disk, bool gpu_attention) {
  StepShape s = shape(layers, batches, prefill, true, !disk);
  s.disk_kv.assign(s.cpu_kv.size(), disk);
  s.gpu_attention = gpu_attention;
  return s;
}

std::vector<std::string> kv_actions(const std::vector<Action>& plan) {
  std::vector<std::string> out;
  for (const auto& a : plan)
    if (a.kind != ActionKind::kLoadWeights && a.kind != ActionKind::kEmbed && a.kind != ActionKind::kHead)
      out.push_back(describe(a));
  return out;
}

TEST(ZigzagPlan, DiskKvIsReadAheadOfCpuAttentionAndWrittenBehindIt) {
  const StepShape s = kv_shape(2, 2, false, /*disk=*/true, /*gpu_attention=*/false);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  // Reads run two batches ahead through three buffers; each write follows its attention.
  const std::vector<std::string> want = {
      "read_kv L0 b0 host 0", "read_kv L0 b1 host 1",
      "pre_attention L0 b0 slot 0", "qkv_to_host L0 b0 slot 0", "cpu_attention L0 b0 slot 0 host 0",
      "write_kv L0 b0 host 0", "read_kv L1 b0 host 2",
      "pre_attention L0 b1 slot 0", "qkv_to_host L0 b1 slot 0", "cpu_attention L0 b1 slot 0 host 1",
      "write_kv L0 b1 host 1", "post_attention L0 b0 slot 0", "read_kv L1 b1 host 0",
      "pre_attention L1 b0 slot 1", "qkv_to_host L1 b0 slot 1", "cpu_attention L1 b0 slot 1 host 2",
      "write_kv L1 b0 host 2", "post_attention L0 b1 slot 0",
      "pre_attention L1 b1 slot 1", "qkv_to_host L1 b1 slot 1", "cpu_attention L1 b1 slot 1 host 0",
      "write_kv L1 b1 host 0", "post_attention L1 b0 slot 1", "post_attention L1 b1 slot 1"};
  EXPECT_EQ(kv_actions(plan), want);
}

TEST(ZigzagPlan, GpuAttentionOverCpuKvLoadsOneBatchAheadOfTheWeights) {
  const StepShape s = kv_shape(2, 2, false, /*disk=*/false, /*gpu_attention=*/true);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  EXPECT_EQ(count(plan, ActionKind::kCpuAttention), 0);
  EXPECT_EQ(kv_actions(plan), (std::vector<std::string>{
                                  "load_kv L0 b0 staging 0", "load_kv L0 b1 staging 1",
                                  "layer L0 b0 slot 0 staging 0", "store_kv L0 b0 slot 0 staging 0",
                                  "load_kv L1 b0 staging 0", "layer L0 b1 slot 0 staging 1",
                                  "store_kv L0 b1 slot 0 staging 1", "load_kv L1 b1 staging 1",
                                  "layer L1 b0 slot 1 staging 0", "store_kv L1 b0 slot 1 staging 0",
                                  "layer L1 b1 slot 1 staging 1", "store_kv L1 b1 slot 1 staging 1"}));
  // On the h2d lane the next batch's KV goes before the weight part issued after the layer.
  for (size_t i = 0; i + 1 < plan.size(); ++i)
    if (plan[i].kind == ActionKind::kStoreKv && i + 1 < plan.size() && plan[i + 1].kind == ActionKind::kLoadWeights)
      ADD_FAILURE() << "a weight part is issued before the next batch's KV at " << describe(plan[i + 1]);
}

TEST(ZigzagPlan, GpuAttentionOverDiskKvChainsReadLoadStoreWrite) {
  const StepShape s = kv_shape(3, 2, false, /*disk=*/true, /*gpu_attention=*/true);
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  EXPECT_EQ(count(plan, ActionKind::kReadKv), 6);
  EXPECT_EQ(count(plan, ActionKind::kLoadKv), 6);
  EXPECT_EQ(count(plan, ActionKind::kStoreKv), 6);
  EXPECT_EQ(count(plan, ActionKind::kWriteKv), 6);
}

TEST(ZigzagPlan, PrefillStoresDiskKvIntoPinnedStagingThenWritesIt) {
  for (bool gpu_attention : {false, true}) {
    const StepShape s = kv_shape(3, 2, true, /*disk=*/true, gpu_attention);
    const auto plan = plan_step(s);
    check_invariants(s, plan);
    EXPECT_EQ(count(plan, ActionKind::kReadKv), 0);
    EXPECT_EQ(count(plan, ActionKind::kLoadKv), 0);
    EXPECT_EQ(count(plan, ActionKind::kStoreKv), 6);
    EXPECT_EQ(count(plan, ActionKind::kWriteKv), 6);
  }
}

TEST(ZigzagPlan, DiskKvReadsKeepTheDiskBusyWhenItBinds) {
  // Each batch's KV takes 5 ms to read and 1 ms to write, the CPU 2 ms to attend: the disk
  // binds at 6 ms a batch, and the step must not take much longer than the disk's own time.
  const StepShape s = kv_shape(16, 2, false, true, false);
  auto durations = [](const Action& a, const void*) {
    switch (a.kind) {
      case ActionKind::kReadKv: return 5.0;
      case ActionKind::kWriteKv: return 1.0;
      case ActionKind::kCpuAttention: return 2.0;
      case ActionKind::kLoadWeights: return 0.5 / a.parts;
      default: return 0.05;
    }
  };
  const Simulation sim = simulate(plan_step(s), durations, nullptr);
  const double disk = sim.busy[static_cast<int>(PlanResource::kDisk)];
  EXPECT_NEAR(disk, 32 * 6.0, 1e-6);
  EXPECT_LT(sim.makespan, disk + 2.0 + 1.0 + 1.0);
}

TEST(ZigzagPlan, HiddenStatesOnTheCpuAreLoadedAheadAndStoredAfterEachLayer) {
  StepShape s = shape(2, 2, false, false, false);
  s.cpu_activations = {true, true};
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  std::vector<std::string> got;
  for (const auto& a : plan) got.push_back(describe(a));
  EXPECT_EQ(got, (std::vector<std::string>{
                     "embed b0 hidden 0", "store_hidden b0 hidden 0", "embed b1 hidden 1",
                     "store_hidden b1 hidden 1", "load_hidden L0 b0 hidden 0", "load_hidden L0 b1 hidden 1",
                     "layer L0 b0 hidden 0", "store_hidden L0 b0 hidden 0", "load_hidden L1 b0 hidden 0",
                     "layer L0 b1 hidden 1", "store_hidden L0 b1 hidden 1", "load_hidden L1 b1 hidden 1",
                     "layer L1 b0 hidden 0", "store_hidden L1 b0 hidden 0", "load_hidden L2 b0 hidden 0",
                     "layer L1 b1 hidden 1", "store_hidden L1 b1 hidden 1", "load_hidden L2 b1 hidden 1",
                     "head L2 b0 hidden 0", "head L2 b1 hidden 1"}));
}

TEST(ZigzagPlan, HiddenStatesOnTheCpuWithCpuAttentionKeepTheirBufferUntilTheOutputHalf) {
  for (int32_t batches : {1, 2, 3}) {
    StepShape s = shape(3, batches, false, true, true);
    s.cpu_activations.assign(batches, true);
    check_invariants(s, plan_step(s));
  }
}

TEST(ZigzagPlan, ExpertsRunOnceALayerAfterEveryBatchAndFeedEachBatchsNextAction) {
  StepShape s = shape(2, 3, false, true, true);
  s.block_experts = {true, true};
  const auto plan = plan_step(s);
  check_invariants(s, plan);
  std::vector<std::string> gpu;
  for (const auto& a : plan)
    if (resource_of(a.kind) == PlanResource::kGpu) gpu.push_back(describe(a));
  // CPU attention: each batch's output half is issued after the next batch's input half; the
  // layer's last one before its experts.
  const std::vector<std::string> want = {
      "embed b0", "embed b1", "embed b2",
      "pre_attention L0 b0 slot 0", "pre_attention L0 b1 slot 0", "post_attention L0 b0 slot 0 defer",
      "pre_attention L0 b2 slot 0", "post_attention L0 b1 slot 0 defer", "post_attention L0 b2 slot 0 defer",
      "experts L0 slot 0",
      "pre_attention L1 b0 slot 1 +experts", "pre_attention L1 b1 slot 1 +experts",
      "post_attention L1 b0 slot 1 defer", "pre_attention L1 b2 slot 1 +experts",
      "post_attention L1 b1 slot 1 defer", "post_attention L1 b2 slot 1 defer", "experts L1 slot 1",
      "head L2 b0 slot 2 +experts", "head L2 b1 slot 2 +experts", "head L2 b2 slot 2 +experts"};
  EXPECT_EQ(gpu, want);
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
  s = shape(2, 2, false, false, true);
  s.disk_kv.assign(4, false);
  s.disk_kv[2] = true;  // on the CPU and the disk at once
  EXPECT_FALSE(check_step_shape(s).is_ok());
  s.disk_kv.pop_back();
  EXPECT_FALSE(check_step_shape(s).is_ok());
  s = shape(2, 2, false, false, false);
  s.cpu_activations = {true};
  EXPECT_FALSE(check_step_shape(s).is_ok());
  s = shape(2, 2, false, false, false);
  s.block_experts = {true};
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
}  // namespace strata::offload
