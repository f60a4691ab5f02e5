// OffloadWeights: a model's weights placed on the tiers a planner::Placement names, in the form
// the CUDA backend consumes (F16/BF16 matrices and tables, F32 vectors, int4-g64 I32 blobs where
// the policy compresses weights). Weights are grouped in units: layer i is unit i; unit L (the
// number of layers) holds the rest (embeddings, final norm, projections, head). A unit's weights
// off the GPU are streamed into a GPU slot before it runs: they are laid out in one "streamed"
// region [cpu part | disk part], each tensor at a fixed offset, so a slot view of every tensor
// exists for each slot. The CPU part lives in pinned host memory; the disk part in one file in
// the offload directory. Embedding tables the GPU does not read stay on the host and are looked
// up there. Owns its memory and the file (removed on destruction). Not thread safe.
// Units: bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "common/tensor.h"
#include "compute/backend.h"
#include "cuda/lanes.h"
#include "model/config.h"
#include "model/weight_source.h"
#include "planner/memory_plan.h"
#include "planner/model_spec.h"
#include "storage/io_file.h"

namespace strata::offload {

struct PlacedTensor {
  std::string name;
  model::WeightSpec spec;
  int64_t index = 0;  // position in model::model_weights() (picks synthetic values)
  compute::WeightKind kind = compute::WeightKind::kLinear;
  DType dtype = DType::kF16;  // device form
  Shape shape;
  size_t bytes = 0;
  planner::Tier tier = planner::Tier::kGpu;
  bool streamed = false;   // copied to a slot before use (GPU-consumed and not on the GPU)
  size_t offset = 0;       // streamed: offset in the unit's streamed region
};

struct WeightUnit {
  std::vector<PlacedTensor> tensors;
  size_t cpu_bytes = 0;    // streamed region: [0, cpu_bytes) from pinned memory
  size_t disk_bytes = 0;   //                  [cpu_bytes, cpu_bytes + disk_bytes) from disk
  Tensor cpu_blob;         // pinned, cpu_bytes
  uint64_t disk_offset = 0;  // in the weights file (aligned)
  std::unordered_map<std::string, Tensor> resident;  // on the GPU for good
  bool streamed() const { return cpu_bytes + disk_bytes > 0; }
  size_t streamed_bytes() const { return cpu_bytes + disk_bytes; }
};

// A host-side table (embedding) that the GPU does not read.
struct HostTable {
  Tensor host;               // cpu tier: pinned [rows, cols] in the device dtype
  uint64_t disk_offset = 0;  // disk tier: where the rows start in the weights file
  bool on_disk = false;
  DType dtype = DType::kF16;
  int64_t rows = 0, cols = 0;
};

class OffloadWeights {
 public:
  // Makes every weight on the GPU (synthetic from `synthetic_seed`, or uploaded from `source`),
  // compresses it when the policy says so, and moves it to its tier.
  static Result<std::unique_ptr<OffloadWeights>> create(
      const model::ModelConfig& config, const planner::ModelSpec& spec,
      const planner::Placement& placement, model::WeightSource* source,
      std::optional<uint64_t> synthetic_seed, compute::Backend& backend, cuda::Lanes& lanes,
      storage::IoBackend& io, const std::filesystem::path& offload_dir, Logger& log);
  ~OffloadWeights();

  int64_t num_units() const { return static_cast<int64_t>(units_.size()); }
  const WeightUnit& unit(int64_t u) const { return units_[u]; }
  size_t max_streamed_bytes() const;
  size_t max_disk_bytes() const;
  const storage::IoFile* file() const { return file_.get(); }
  uint64_t file_bytes() const { return file_bytes_; }
  uint64_t pinned_bytes() const { return pinned_bytes_; }

  // Views of unit u's weights by canonical name: resident tensors, and streamed ones at their
  // offsets in `slot` (a device buffer of at least the unit's streamed bytes; undefined when the
  // unit streams nothing). The tied head answers to "lm_head.weight" too.
  std::unordered_map<std::string, Tensor> views(int64_t u, const Tensor& slot) const;

  // Host tables ("embed.tokens", "embed.positions") the GPU does not read; null when the table
  // is on the GPU.
  const HostTable* host_table(const std::string& name) const;
  // Rows `ids` of a host table into `out` ([ids.size(), cols] of its dtype, host memory).
  Status gather_host_rows(const HostTable& table, std::span<const int32_t> ids, void* out) const;

 private:
  OffloadWeights() = default;
  // Each tensor's tier, device form and bytes, by unit.
  void lay_out(const model::ModelConfig& config, const planner::ModelSpec& spec,
               const planner::Placement& placement, DType activations);
  // Offsets in the units' streamed regions and in the file; host tables. Returns the file size.
  uint64_t assign_offsets();
  // Pinned regions, the file (of `file_end` bytes) and the staging its writes go through.
  Result<Tensor> allocate(uint64_t file_end, cuda::Lanes& lanes, storage::IoBackend& io,
                          const std::filesystem::path& offload_dir, Logger& log);
  // Makes (or reads), compresses and moves every tensor to its tier, unit by unit.
  Status place_all(model::WeightSource* source, std::optional<uint64_t> synthetic_seed,
                   compute::Backend& backend, cuda::Lanes& lanes, storage::IoBackend& io,
                   const Tensor& staging);
  Status place(PlacedTensor& t, WeightUnit& unit, Tensor dev, compute::Backend& backend,
               cuda::Lanes& lanes, storage::IoBackend& io, const Tensor& staging);
  Status write_file(storage::IoBackend& io, uint64_t offset, size_t bytes, const std::byte* from);

  std::vector<WeightUnit> units_;
  std::unordered_map<std::string, HostTable> host_tables_;
  std::unique_ptr<storage::IoFile> file_;
  std::filesystem::path file_path_;
  int lookup_fd_ = -1;  // the file again, without O_DIRECT, for embedding rows
  uint64_t file_bytes_ = 0;
  uint64_t pinned_bytes_ = 0;
  size_t unit_staging_ = 0;  // the largest disk part: where a host-only table's staging starts
  bool tied_head_ = false;
};

}  // namespace strata::offload
