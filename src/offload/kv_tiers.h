// KvTiers: the KV cache of every (layer, GPU batch) on the tier the placement gives it, and the
// buffers that move off-GPU KV: on the GPU a cache per unit, fp16 [gbs, max_len, kv_heads,
// head_dim] for k and for v, or int4-g64 (cuda/int4_kv.h); in pinned DRAM the host layout of
// compute/host_kv.h; on the disk a region of the KV file (offload/kv_file.h) read into one of
// kDiskStaging pinned buffers. Two GPU staging buffers carry off-GPU KV: with attention on the GPU
// the whole of a unit (fp16, or int4 in the host layout); with attention on the CPU only a
// prompt's fp16 KV [gbs, prompt, kv_heads, head_dim], plus its int4 blobs when the KV is int4.
// Handles kReadKv, kWriteKv (disk worker), kLoadKv (h2d), kStoreKv (d2h), and runs a layer's
// attention over the right cache on the GPU. Owns its buffers. Not thread safe. Units: bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "compute/host_kv.h"
#include "cuda/int4_kv.h"
#include "cuda/lanes.h"
#include "model/config.h"
#include "offload/executor.h"
#include "offload/kv_file.h"
#include "offload/plan.h"
#include "offload/step_state.h"
#include "planner/memory_plan.h"
#include "storage/io_backend.h"

namespace strata::offload {

class KvTiers {
 public:
  static constexpr int kDiskStaging = 3;  // pinned staging for disk KV (planner::plan_memory's 3)

  // Allocates every unit's KV where `placement` puts it, the KV file and the staging. Errors name
  // the buffer that does not fit, or the offload directory.
  static Result<std::unique_ptr<KvTiers>> create(const model::ModelConfig& config,
                                                 const planner::Placement& placement,
                                                 const BlockDims& dims, compute::Backend& backend,
                                                 cuda::Lanes& lanes, storage::IoBackend& io,
                                                 const std::filesystem::path& offload_dir,
                                                 Logger& log);

  bool any_off_gpu() const { return any_off_gpu_; }
  bool int4() const { return int4_; }
  bool gpu_attention() const { return gpu_attention_; }
  // Cuts every unit's KV into pages of `page_len` positions (gbs * max_len / page_len of them;
  // page_len must divide gbs * max_len), a sequence's rows running on over its pages, or back
  // into gbs slots of max_len (page_len 0). Every buffer keeps its bytes; what the KV held is
  // dropped. Prompts staged for attention on the CPU stay at their place in the batch.
  void set_page_len(int64_t page_len);
  bool paged() const { return page_len_ > 0; }

  // The plan's view of the KV: which units are on the CPU and on the disk, attention's side.
  void describe_to(StepShape* shape) const;
  void bind(Handlers& handlers, const StepState& step);

  // Attention of layer `a.unit` for GPU batch `a.batch` on the GPU, over the unit's GPU cache or
  // the staging buffer `a.staging` holding it; writes this step's k, v there first. Off-GPU int4
  // KV of a prompt is quantised into its blobs for the store after.
  Status attend_on_gpu(const Action& a, const compute::TokenBatch& batch,
                       const compute::Transformer::AttentionInputs& in,
                       const compute::AttentionParams& params, Tensor& out);
  // The host KV of (layer, batch): its pinned memory, or the disk staging holding it.
  const compute::HostKvView& host_view(int32_t layer, int32_t batch, int32_t host_staging) const;
  // Bytes of KV an attention over `seqs` reads (every position, keys and values).
  uint64_t bytes_read(std::span<const compute::SeqSpan> seqs) const;

  uint64_t pinned_bytes() const { return pinned_bytes_; }
  uint64_t file_bytes() const { return file_ ? file_->file_bytes() : 0; }

 private:
  struct Unit {
    planner::Tier tier = planner::Tier::kGpu;
    compute::LayerKvCache gpu;   // GPU tier, fp16
    cuda::Int4KvCache gpu4;      // GPU tier, int4
    compute::HostKvView host;    // CPU tier (memory owned by host_k / host_v)
    Tensor host_k, host_v;       // pinned, host layout
    int64_t disk_region = -1;    // disk tier: its region of the KV file
  };

  KvTiers(const model::ModelConfig& config, const BlockDims& dims, compute::Backend& backend,
          cuda::Lanes& lanes);
  Status allocate_units(const planner::Placement& placement, storage::IoBackend& io,
                        const std::filesystem::path& offload_dir, Logger& log);
  Status allocate_gpu_staging();
  Result<Tensor> pinned(size_t bytes, const char* what);
  Unit& unit(int32_t layer, int32_t batch) { return units_[static_cast<size_t>(layer * dims_.batches + batch)]; }
  const Unit& unit(int32_t layer, int32_t batch) const {
    return units_[static_cast<size_t>(layer * dims_.batches + batch)];
  }
  // GPU staging `s`'s keys (kvi 0) or values, when it has the host layout.
  std::byte* gpu_staging(int32_t s, int kvi) const;
  Result<HostTask> disk_transfer(const Action& a, const StepState& step, bool write);
  uint64_t load(const Action& a, const StepState& step, cuda::Lane lane);
  uint64_t store(const Action& a, const StepState& step, cuda::Lane lane);
  // The prompt rows [0, positions) of the `slots` sequences staged from `staged` on, into slots
  // [first, first + slots) of the host KV, for attention on the CPU.
  uint64_t store_prompt_for_cpu(const Action& a, const compute::HostKvView& host, int kvi, int32_t staged,
                                int32_t first, int32_t slots, int32_t positions, cuda::Lane lane);
  // Copies positions [begin, end) of `slots` sequences from slot `slot0` on, between two KV
  // buffers of the host layout; returns the bytes.
  uint64_t copy_kv_rows(cuda::Lane lane, std::byte* dst, const std::byte* src,
                        const compute::HostKvShape& hs, int64_t slot0, int64_t slots, int64_t begin,
                        int64_t end);

  model::ModelConfig config_;
  BlockDims dims_;
  compute::Backend& backend_;
  cuda::Lanes& lanes_;
  int64_t row_elems_ = 0;  // kv_heads * head_dim
  bool int4_ = false, gpu_attention_ = false, any_off_gpu_ = false;
  int64_t page_len_ = 0;  // 0: slots of max_len
  compute::HostKvShape host_shape_;
  std::vector<Unit> units_;                  // [layer * batches + batch]
  std::unique_ptr<KvFile> file_;             // the disk tier
  std::vector<Tensor> disk_staging_;         // [kDiskStaging] pinned, one region each
  std::vector<compute::HostKvView> disk_views_;
  compute::LayerKvCache staging_[2];         // GPU fp16: [gbs, max_len or prompt, kv_heads, head_dim]
  cuda::Int4KvCache staging4_[2];            // GPU int4, host layout (int4 KV attended on the GPU)
  Tensor blob_staging_[2][2];                // GPU [staging][k/v]: a prompt's int4 rows
  uint64_t pinned_bytes_ = 0;
};

}  // namespace strata::offload
