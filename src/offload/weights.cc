#include "offload/weights.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/units.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_weights.h"
#include "cuda/int4_weights.h"
#include "model/weight_names.h"

namespace strata::offload {
namespace {

constexpr size_t kTensorAlign = 256;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Unit of a canonical name: the layer for "layers.{i}.*", else `layers` (the rest).
int64_t unit_of(const std::string& name, int64_t layers, std::string* suffix) {
  if (name.rfind("layers.", 0) != 0) return layers;
  const size_t dot = name.find('.', 7);
  *suffix = name.substr(dot + 1);
  return std::stoll(name.substr(7, dot - 7));
}

}  // namespace

OffloadWeights::~OffloadWeights() {
  if (lookup_fd_ >= 0) ::close(lookup_fd_);
  file_.reset();
  if (!file_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove(file_path_, ec);
  }
}

size_t OffloadWeights::max_streamed_bytes() const {
  size_t m = 0;
  for (const auto& u : units_) m = std::max(m, u.streamed_bytes());
  return m;
}

size_t OffloadWeights::max_disk_bytes() const {
  size_t m = 0;
  for (const auto& u : units_) m = std::max(m, u.disk_bytes);
  return m;
}

const HostTable* OffloadWeights::host_table(const std::string& name) const {
  auto it = host_tables_.find(name);
  return it == host_tables_.end() ? nullptr : &it->second;
}

std::unordered_map<std::string, Tensor> OffloadWeights::views(int64_t u, const Tensor& slot) const {
  const WeightUnit& unit = units_[u];
  std::unordered_map<std::string, Tensor> out = unit.resident;
  for (const auto& t : unit.tensors) {
    if (!t.streamed) continue;
    STRATA_CHECK(slot.defined() && slot.bytes() >= unit.streamed_bytes(),
                 "offload weights: the slot is smaller than unit " + std::to_string(u));
    out[t.name] = Tensor::wrap(static_cast<std::byte*>(slot.raw()) + t.offset, t.dtype, t.shape,
                               MemoryKind::kGpu, nullptr);
  }
  if (tied_head_) {
    auto it = out.find("embed.tokens");
    if (it != out.end()) out["lm_head.weight"] = it->second;
  }
  return out;
}

Status OffloadWeights::gather_host_rows(const HostTable& table, std::span<const int32_t> ids,
                                        void* out) const {
  const size_t row = static_cast<size_t>(table.cols) * dtype_size(table.dtype);
  auto* dst = static_cast<std::byte*>(out);
  for (size_t i = 0; i < ids.size(); ++i) {
    STRATA_CHECK(ids[i] >= 0 && ids[i] < table.rows, "host table: row out of range");
    if (!table.on_disk) {
      std::memcpy(dst + i * row, static_cast<const std::byte*>(table.host.raw()) + ids[i] * row, row);
      continue;
    }
    // Row lookups go through the page cache: a second descriptor without O_DIRECT.
    const uint64_t off = table.disk_offset + static_cast<uint64_t>(ids[i]) * row;
    size_t done = 0;
    while (done < row) {
      const ssize_t n = ::pread(lookup_fd_, dst + i * row + done, row - done, static_cast<off_t>(off + done));
      if (n <= 0)
        return io_error("reading embedding row " + std::to_string(ids[i]) + " from " +
                            file_path_.string(), n < 0 ? errno : EIO);
      done += static_cast<size_t>(n);
    }
  }
  return Status::ok();
}

Result<std::unique_ptr<OffloadWeights>> OffloadWeights::create(
    const model::ModelConfig& config, const planner::ModelSpec& spec,
    const planner::Placement& placement, model::WeightSource* source,
    std::optional<uint64_t> synthetic_seed, compute::Backend& backend, cuda::Lanes& lanes,
    storage::IoBackend& io, const std::filesystem::path& offload_dir, Logger& log) {
  if (!source && !synthetic_seed)
    return invalid_argument("offload weights: neither a weight source nor a synthetic seed");
  std::unique_ptr<OffloadWeights> w(new OffloadWeights());
  w->units_.resize(static_cast<size_t>(config.num_layers) + 1);
  w->tied_head_ = config.tie_word_embeddings;
  w->lay_out(config, spec, placement, backend.activation_dtype());
  const uint64_t file_end = w->assign_offsets();
  STRATA_ASSIGN_OR_RETURN(Tensor staging, w->allocate(file_end, lanes, io, offload_dir, log));
  STRATA_RETURN_IF_ERROR(w->place_all(source, synthetic_seed, backend, lanes, io, staging));
  // The dense copies of compressed weights and the other temporaries go back to the driver.
  cuda::release_cached_memory(backend);
  if (w->file_) STRATA_RETURN_IF_ERROR(w->file_->sync());
  return w;
}

void OffloadWeights::lay_out(const model::ModelConfig& config, const planner::ModelSpec& spec,
                             const planner::Placement& placement, DType activations) {
  const int64_t L = config.num_layers;
  const bool int4 = placement.choices.weights == planner::Compression::kInt4;
  std::unordered_map<std::string, size_t> layer_index, other_index;
  for (size_t t = 0; t < spec.layer_tensors.size(); ++t)
    layer_index[spec.layer_tensors[t].name.substr(std::string("layers.0.").size())] = t;
  for (size_t t = 0; t < spec.other_tensors.size(); ++t) other_index[spec.other_tensors[t].name] = t;
  const auto specs = model::model_weights(config);
  for (size_t wi = 0; wi < specs.size(); ++wi) {
    const model::WeightSpec& ws = specs[wi];
    std::string suffix;
    const int64_t u = unit_of(ws.name, L, &suffix);
    const planner::TensorSpec* ts;
    PlacedTensor p;
    if (u < L) {
      const size_t t = layer_index.at(suffix);
      ts = &spec.layer_tensors[t];
      p.tier = placement.layer_weights[static_cast<size_t>(u) * spec.layer_tensors.size() + t];
    } else {
      const size_t t = other_index.at(ws.name);
      ts = &spec.other_tensors[t];
      p.tier = placement.other_weights[t];
    }
    p.name = ws.name;
    p.spec = ws;
    p.index = static_cast<int64_t>(wi);
    const bool table = ws.name == "embed.tokens" || ws.name == "embed.positions";
    p.kind = table ? compute::WeightKind::kTable
                   : ws.shape.size() == 1 ? compute::WeightKind::kVector : compute::WeightKind::kLinear;
    if (int4 && ts->compressible) {
      p.dtype = DType::kI32;
      p.shape = cuda::int4_weight_shape(ws.shape[0], ws.shape[1]);
    } else {
      p.dtype = p.kind == compute::WeightKind::kVector ? DType::kF32 : activations;
      p.shape = ws.shape;
    }
    p.bytes = static_cast<size_t>(shape_numel(p.shape)) * dtype_size(p.dtype);
    p.streamed = p.tier != planner::Tier::kGpu && ts->gpu_consumed;
    units_[u].tensors.push_back(std::move(p));
  }
}

uint64_t OffloadWeights::assign_offsets() {
  uint64_t file_end = 0;
  for (auto& unit : units_) {
    size_t off = 0;
    for (auto& t : unit.tensors)
      if (t.streamed && t.tier == planner::Tier::kCpu) {
        t.offset = off;
        off = round_up(off + t.bytes, kTensorAlign);
      }
    unit.cpu_bytes = round_up(off, storage::kIoAlignment);
    off = 0;
    for (auto& t : unit.tensors)
      if (t.streamed && t.tier == planner::Tier::kDisk) {
        t.offset = unit.cpu_bytes + off;
        off = round_up(off + t.bytes, kTensorAlign);
      }
    unit.disk_bytes = round_up(off, storage::kIoAlignment);
    if (unit.disk_bytes > 0) {
      unit.disk_offset = file_end;
      file_end += unit.disk_bytes;
    }
    unit_staging_ = std::max(unit_staging_, unit.disk_bytes);
  }
  // Host tables the GPU does not read.
  WeightUnit& rest = units_.back();
  for (auto& t : rest.tensors) {
    if (t.kind != compute::WeightKind::kTable || t.tier == planner::Tier::kGpu) continue;
    HostTable h;
    h.dtype = t.dtype;
    h.rows = t.shape[0];
    h.cols = t.shape[1];
    h.on_disk = t.tier == planner::Tier::kDisk;
    if (h.on_disk) {
      if (t.streamed) {
        h.disk_offset = rest.disk_offset + (t.offset - rest.cpu_bytes);
      } else {
        h.disk_offset = file_end;
        file_end += round_up(t.bytes, storage::kIoAlignment);
      }
    }
    host_tables_[t.name] = h;
  }
  return file_end;
}

Result<Tensor> OffloadWeights::allocate(uint64_t file_end, cuda::Lanes& lanes, storage::IoBackend& io,
                                        const std::filesystem::path& offload_dir, Logger& log) {
  for (auto& unit : units_) {
    if (unit.cpu_bytes == 0) continue;
    STRATA_ASSIGN_OR_RETURN(unit.cpu_blob, lanes.allocate_pinned(DType::kI32, {static_cast<int64_t>(unit.cpu_bytes / 4)}, "weights.resident (cpu)"));
    pinned_bytes_ += unit.cpu_bytes;
  }
  if (file_end == 0) return Tensor();
  size_t table_staging = 0;
  for (const auto& t : units_.back().tensors)
    if (t.tier == planner::Tier::kDisk && !t.streamed)
      table_staging = std::max(table_staging, round_up(t.bytes, storage::kIoAlignment));
  // The staging for the disk writes: a unit's streamed disk part, then (after it) a host-only table.
  const size_t staging_bytes = unit_staging_ + table_staging;
  std::error_code ec;
  std::filesystem::create_directories(offload_dir, ec);
  file_path_ = offload_dir / ("strata-weights-" + std::to_string(::getpid()) + ".bin");
  STRATA_ASSIGN_OR_RETURN(file_, storage::IoFile::open(io, file_path_, storage::FileAccess::kReadWrite, /*direct=*/true, log));
  STRATA_RETURN_IF_ERROR(file_->truncate(file_end));
  file_bytes_ = file_end;
  lookup_fd_ = ::open(file_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (lookup_fd_ < 0) return io_error("cannot open " + file_path_.string(), errno);
  return lanes.allocate_pinned(DType::kI32, {static_cast<int64_t>(staging_bytes / 4)}, "weights staging for the offload file");
}

Status OffloadWeights::write_file(storage::IoBackend& io, uint64_t offset, size_t bytes, const std::byte* from) {
  storage::IoRequest r;
  r.kind = storage::IoOpKind::kWrite;
  r.file = file_.get();
  r.offset = offset;
  r.buf = const_cast<std::byte*>(from);
  r.length = bytes;
  r.what = "weights for the offload directory";
  Status st = storage::run_io(io, {&r, 1});
  if (!st.is_ok())
    return st.with_context("writing " + format_bytes(bytes) + " of weights to " + file_path_.string() +
                           " (is the offload directory's disk full? free space or lower --disk-mem)");
  return Status::ok();
}

Status OffloadWeights::place_all(model::WeightSource* source, std::optional<uint64_t> synthetic_seed,
                                 compute::Backend& backend, cuda::Lanes& lanes, storage::IoBackend& io,
                                 const Tensor& staging) {
  const uint64_t stream0 = synthetic_seed ? *synthetic_seed * 0x9e3779b97f4a7c15ull + 1 : 0;
  for (auto& unit : units_) {
    for (auto& t : unit.tensors) {
      Tensor dev;
      if (synthetic_seed) {
        STRATA_ASSIGN_OR_RETURN(dev, cuda::make_device_synthetic_weight(t.spec, backend, stream0 + static_cast<uint64_t>(t.index)));
      } else {
        STRATA_ASSIGN_OR_RETURN(Tensor host, source->load(t.spec));
        STRATA_ASSIGN_OR_RETURN(dev, backend.upload(host, t.kind));
      }
      if (t.dtype == DType::kI32) {
        STRATA_ASSIGN_OR_RETURN(dev, cuda::quantise_int4_on_device(backend, dev));
      }
      STRATA_CHECK(dev.bytes() == t.bytes && dev.dtype() == t.dtype,
                   "offload weights: " + t.name + " came out as " + shape_string(dev.shape()));
      STRATA_RETURN_IF_ERROR(place(t, unit, std::move(dev), backend, lanes, io, staging));
    }
    if (unit.disk_bytes > 0)
      STRATA_RETURN_IF_ERROR(write_file(io, unit.disk_offset, unit.disk_bytes, static_cast<const std::byte*>(staging.raw())));
  }
  return Status::ok();
}

// A tensor made on the GPU to its tier: kept there, or copied to its pinned place (a unit's
// streamed region, or a host table's own buffer), or to the staging of its disk part (a host-only
// table on the disk is written at once).
Status OffloadWeights::place(PlacedTensor& t, WeightUnit& unit, Tensor dev, compute::Backend& backend,
                             cuda::Lanes& lanes, storage::IoBackend& io, const Tensor& staging) {
  if (t.tier == planner::Tier::kGpu) {
    unit.resident[t.name] = std::move(dev);
    return Status::ok();
  }
  cuda::synchronize(backend);
  void* dst = nullptr;
  HostTable* table = nullptr;
  if (auto it = host_tables_.find(t.name); it != host_tables_.end()) table = &it->second;
  if (t.tier == planner::Tier::kCpu) {
    if (t.streamed) {
      dst = static_cast<std::byte*>(unit.cpu_blob.raw()) + t.offset;
      if (table) table->host = Tensor::wrap(dst, t.dtype, t.shape, MemoryKind::kPinned, nullptr);
    } else {
      STRATA_ASSIGN_OR_RETURN(table->host, lanes.allocate_pinned(t.dtype, t.shape, "weights.resident (cpu)"));
      pinned_bytes_ += t.bytes;
      dst = table->host.raw();
    }
  } else {
    dst = static_cast<std::byte*>(staging.raw()) + (t.streamed ? t.offset - unit.cpu_bytes : unit_staging_);
  }
  lanes.copy(cuda::Lane::kD2h, dst, dev.raw(), t.bytes);
  STRATA_RETURN_IF_ERROR(lanes.synchronize());
  if (t.tier == planner::Tier::kDisk && !t.streamed)
    STRATA_RETURN_IF_ERROR(write_file(io, table->disk_offset, round_up(t.bytes, storage::kIoAlignment),
                                      static_cast<const std::byte*>(staging.raw()) + unit_staging_));
  return Status::ok();
}

}  // namespace strata::offload
