// The offloading engine's state, shared by its setup (offload_engine.cc) and its step
// (offload_step.cc). Internal to src/runtime.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/thread_pool.h"
#include "compute/host_kv.h"
#include "compute/transformer.h"
#include "cuda/int4_kv.h"
#include "cuda/lanes.h"
#include "planner/memory_plan.h"
#include "planner/model_spec.h"
#include "runtime/kv_file.h"
#include "runtime/offload_engine.h"
#include "runtime/offload_weights.h"
#include "runtime/task_worker.h"
#include "runtime/trace.h"
#include "runtime/zigzag_plan.h"
#include "storage/io_backend.h"

namespace strata::runtime {

class Context;

namespace offload_detail {

using planner::Tier;
constexpr int kDiskStaging = 2;    // pinned staging buffers for disk parts
constexpr int kKvDiskStaging = 3;  // pinned staging buffers for disk KV (planner::plan_memory's 3)

// One GPU batch's share of a step.
struct SubBatch {
  compute::TokenBatch batch;       // local slots, offsets from 0
  int32_t first_row = 0;           // its first token's row in the step's batch
  std::vector<int32_t> rows;       // logit rows, local
  int32_t logit_begin = 0;         // where its logit rows go in the step's output
};

// Per GPU batch, pinned host buffers for attention on the CPU.
struct CpuAttentionIo {
  Tensor q, k, v, out;  // [gbs, q_dim] / [gbs, kv_dim] fp16 bit patterns
};

struct KvUnit {
  Tier tier = Tier::kGpu;
  compute::LayerKvCache gpu;     // GPU tier, fp16
  cuda::Int4KvCache gpu4;        // GPU tier, int4
  compute::HostKvView host;      // CPU tier (memory owned by host_k / host_v)
  Tensor host_k, host_v;
  int64_t disk_region = -1;      // disk tier: its region of the KV file
};

// The rows of a GPU batch's KV that a step reads (every position up to its new ones) or writes
// (its new ones).
inline std::vector<KvRows> kv_rows(std::span<const compute::SeqSpan> seqs, bool written_only) {
  std::vector<KvRows> r;
  for (const auto& s : seqs)
    r.push_back({s.slot, written_only ? s.past_len : 0, static_cast<int64_t>(s.past_len) + s.num_tokens});
  return r;
}

}  // namespace offload_detail

struct OffloadEngine::Impl {
  using SubBatch = offload_detail::SubBatch;
  using CpuAttentionIo = offload_detail::CpuAttentionIo;
  using KvUnit = offload_detail::KvUnit;

  Context* ctx = nullptr;
  compute::Backend* backend = nullptr;
  model::ModelConfig config;
  planner::ModelSpec spec;
  planner::Placement placement;
  OffloadOptions options;
  std::unique_ptr<compute::Transformer> model;  // the layer pieces; holds no weights
  std::unique_ptr<cuda::Lanes> lanes;
  std::unique_ptr<storage::IoBackend> io;
  std::unique_ptr<OffloadWeights> weights;
  int64_t L = 0, nb = 1, gbs = 1, max_len = 0, prefill_len = 0;
  int32_t slots_in_use = 0, max_len_in_use = 0;
  int num_slots = planner::kMaxPrefetchSlots;  // GPU weight slots: loads run num_slots - 1 units ahead

  std::vector<Tensor> slots;                 // num_slots device buffers
  std::vector<int32_t> unit_slot;            // per unit: its slot, or -1
  std::vector<std::unordered_map<std::string, Tensor>> unit_views;
  std::vector<Tensor> disk_staging;          // pinned
  std::vector<KvUnit> kv;                    // [layer * nb + batch]
  bool any_off_gpu_kv = false;
  bool int4_kv = false;
  bool gpu_attention = false;                // decode attention over off-GPU KV on the GPU
  compute::LayerKvCache kv_staging[2];       // GPU: off-GPU KV of the batch computing or next
  cuda::Int4KvCache kv_staging4[2];          // the same for int4 KV with attention on the GPU
  std::unique_ptr<KvFile> kv_file;           // the disk tier of the KV cache
  std::vector<Tensor> kv_disk_staging;       // pinned, one disk KV region each
  std::vector<compute::HostKvView> kv_disk_views;
  Tensor kv_blob_staging[2][2];              // int4: [staging][k/v] quantised rows
  std::vector<CpuAttentionIo> cpu_io;        // per batch
  Tensor embed_rows, embed_pos_rows;         // pinned, host-side embedding lookups
  Tensor hidden_staging[2];                  // GPU: hidden states of batches kept on the CPU
  std::vector<Tensor> host_hidden;           // pinned, per batch kept on the CPU (else undefined)

  std::unique_ptr<TaskWorker> disk_worker, cpu_worker;
  std::unique_ptr<ThreadPool> near_gpu_pool;  // CPU attention on the cores nearest the GPU
  ThreadPool* attention_pool = nullptr;       // near_gpu_pool, or the Context's
  StepShape base_shape;
  std::map<std::pair<bool, std::vector<bool>>, std::vector<Action>> plans;

  // Accounting.
  OffloadReport report;
  std::mutex spans_mu;
  std::vector<TraceSpan> spans;
  uint64_t bytes[kNumPlanResources] = {};
  std::atomic<uint64_t> kv_disk_read{0}, kv_disk_written{0};  // KV bytes moved by the disk worker
  double report_from_s = 0;
  uint64_t pinned_bytes = 0;

  void host_span(const char* track, std::string name, double start, uint64_t n) {
    std::lock_guard lock(spans_mu);
    spans.push_back({track, std::move(name), start, lanes->now_s(), n});
  }
  void collect_gpu_spans() {
    auto got = lanes->take_spans();
    std::lock_guard lock(spans_mu);
    for (auto& s : got)
      spans.push_back({cuda::lane_name(s.lane), std::move(s.name), s.start_s, s.end_s, s.bytes});
  }

  Result<Tensor> pinned(size_t bytes, const std::string& what) {
    const Shape words = {static_cast<int64_t>((bytes + 3) / 4)};
    STRATA_ASSIGN_OR_RETURN(Tensor t, lanes->allocate_pinned(DType::kI32, words, what));
    pinned_bytes += t.bytes();
    return t;
  }

  uint64_t disk_bytes() const { return weights->file_bytes() + (kv_file ? kv_file->file_bytes() : 0); }
  // The first `rows` rows of a hidden-state staging buffer.
  Tensor hidden_view(int32_t staging, int64_t rows) const {
    return hidden_staging[staging].slice_rows(0, rows);
  }
  // The host KV of (layer, batch): its CPU-tier memory, or the disk staging holding it.
  const compute::HostKvView& host_kv(const KvUnit& u, int32_t host_staging) const {
    return u.tier == planner::Tier::kDisk ? kv_disk_views[host_staging] : u.host;
  }

  // The GPU staging buffer `s`'s keys (kvi 0) or values, when it has the host layout (attention
  // on the GPU: fp16 [gbs, max_len, E] or the int4 blob).
  std::byte* gpu_staging(int32_t s, int kvi) const {
    const Tensor& t = int4_kv ? (kvi == 0 ? kv_staging4[s].k : kv_staging4[s].v)
                              : (kvi == 0 ? kv_staging[s].k : kv_staging[s].v);
    return static_cast<std::byte*>(t.raw());
  }
  // Copies positions [begin, end) of `slots` sequences from slot `slot0` on, between two KV
  // buffers of the host layout (k or v of one unit; the int4 codes, scales and mins each);
  // returns the bytes.
  uint64_t copy_kv_rows(cuda::Lane lane, std::byte* dst, const std::byte* src, const compute::HostKvShape& hs,
                        int64_t slot0, int64_t slots, int64_t begin, int64_t end);

  Status build(model::WeightSource* source);
  Result<Tensor> step(const compute::TokenBatch& batch, std::span<const int32_t> rows);
  Status embed(const SubBatch& sb, Tensor& x);
};

}  // namespace strata::runtime
