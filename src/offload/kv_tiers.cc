#include "offload/kv_tiers.h"

#include <algorithm>
#include <utility>

#include "cuda/int4_weights.h"
#include "offload/pinned.h"

namespace strata::offload {

using planner::Tier;

KvTiers::KvTiers(const model::ModelConfig& config, const BlockDims& dims, compute::Backend& backend,
                 cuda::Lanes& lanes)
    : config_(config), dims_(dims), backend_(backend), lanes_(lanes) {}

Result<std::unique_ptr<KvTiers>> KvTiers::create(const model::ModelConfig& config,
                                                 const planner::Placement& placement,
                                                 const BlockDims& dims, compute::Backend& backend,
                                                 cuda::Lanes& lanes, storage::IoBackend& io,
                                                 const std::filesystem::path& offload_dir,
                                                 Logger& log) {
  std::unique_ptr<KvTiers> kv(new KvTiers(config, dims, backend, lanes));
  kv->int4_ = placement.choices.kv == planner::Compression::kInt4;
  kv->gpu_attention_ = placement.choices.attention == planner::Attention::kGpu;
  kv->row_elems_ = config.num_kv_heads * config.head_dim;
  kv->host_shape_ = {dims.gbs, dims.max_len, config.num_kv_heads, config.head_dim, kv->int4_};
  STRATA_RETURN_IF_ERROR(kv->allocate_units(placement, io, offload_dir, log));
  if (kv->any_off_gpu_) STRATA_RETURN_IF_ERROR(kv->allocate_gpu_staging());
  return kv;
}

Result<Tensor> KvTiers::pinned(size_t bytes, const char* what) {
  return allocate_pinned_bytes(lanes_, bytes, what, &pinned_bytes_);
}

Status KvTiers::allocate_units(const planner::Placement& placement, storage::IoBackend& io,
                               const std::filesystem::path& offload_dir, Logger& log) {
  units_.resize(static_cast<size_t>(dims_.layers * dims_.batches));
  const Shape fp16_shape = {dims_.gbs, dims_.max_len, config_.num_kv_heads, config_.head_dim};
  int64_t disk_regions = 0;
  for (size_t i = 0; i < units_.size(); ++i) {
    Unit& u = units_[i];
    u.tier = placement.kv[i];
    if (u.tier == Tier::kGpu && int4_) {
      STRATA_ASSIGN_OR_RETURN(u.gpu4, cuda::allocate_int4_kv_cache(backend_, dims_.gbs, dims_.max_len,
                                                                   config_.num_kv_heads, config_.head_dim));
      continue;
    }
    if (u.tier == Tier::kGpu) {
      STRATA_ASSIGN_OR_RETURN(u.gpu.k, backend_.allocate(backend_.activation_dtype(), fp16_shape));
      STRATA_ASSIGN_OR_RETURN(u.gpu.v, backend_.allocate(backend_.activation_dtype(), fp16_shape));
      continue;
    }
    any_off_gpu_ = true;
    if (u.tier == Tier::kDisk) {
      u.disk_region = disk_regions++;
      continue;
    }
    u.host.shape = host_shape_;
    STRATA_ASSIGN_OR_RETURN(u.host_k, pinned(host_shape_.bytes_each(), "kv.resident (cpu)"));
    STRATA_ASSIGN_OR_RETURN(u.host_v, pinned(host_shape_.bytes_each(), "kv.resident (cpu)"));
    u.host.k = static_cast<std::byte*>(u.host_k.raw());
    u.host.v = static_cast<std::byte*>(u.host_v.raw());
  }
  if (disk_regions == 0) return Status::ok();
  STRATA_ASSIGN_OR_RETURN(file_, KvFile::create(io, offload_dir, host_shape_, disk_regions, log));
  for (int s = 0; s < kDiskStaging; ++s) {
    STRATA_ASSIGN_OR_RETURN(Tensor t, pinned(file_->region_bytes(), "kv.disk_staging"));
    auto* base = static_cast<std::byte*>(t.raw());
    disk_views_.push_back({host_shape_, base, base + file_->v_offset()});
    disk_staging_.push_back(std::move(t));
  }
  return Status::ok();
}

// Attention on the GPU reads a whole unit's KV from the staging; on the CPU, the staging only
// carries a prompt's KV off the GPU.
Status KvTiers::allocate_gpu_staging() {
  if (backend_.activation_dtype() != DType::kF16)
    return unsupported("offload: KV off the GPU needs F16 activations");
  const int64_t staging_len = gpu_attention_ ? dims_.max_len : dims_.prefill_len;
  const Shape shape = {dims_.gbs, staging_len, config_.num_kv_heads, config_.head_dim};
  for (int s = 0; s < 2 && int4_ && gpu_attention_; ++s) {
    STRATA_ASSIGN_OR_RETURN(staging4_[s], cuda::allocate_int4_kv_cache(backend_, dims_.gbs, dims_.max_len,
                                                                       config_.num_kv_heads, config_.head_dim));
  }
  for (int s = 0; s < 2 && !(int4_ && gpu_attention_); ++s) {
    STRATA_ASSIGN_OR_RETURN(staging_[s].k, backend_.allocate(DType::kF16, shape));
    STRATA_ASSIGN_OR_RETURN(staging_[s].v, backend_.allocate(DType::kF16, shape));
    if (!int4_) continue;
    for (int kvi = 0; kvi < 2; ++kvi) {
      const Shape blob = cuda::int4_weight_shape(dims_.gbs * dims_.prefill_len, row_elems_);
      STRATA_ASSIGN_OR_RETURN(blob_staging_[s][kvi], backend_.allocate(DType::kI32, blob));
    }
  }
  return Status::ok();
}

void KvTiers::set_page_len(int64_t page_len) {
  const int64_t rows = dims_.gbs * dims_.max_len;
  STRATA_CHECK(page_len >= 0 && (page_len == 0 || rows % page_len == 0),
               "KvTiers: pages of " + std::to_string(page_len) + " positions do not divide " + std::to_string(rows));
  page_len_ = page_len;
  const int64_t len = page_len > 0 ? page_len : dims_.max_len, slots = rows / len;
  host_shape_.slots = slots;
  host_shape_.max_len = len;
  const Shape fp16 = {slots, len, config_.num_kv_heads, config_.head_dim};
  auto reshape = [&](compute::LayerKvCache& c) {
    if (!c.k.defined()) return;
    c.k = c.k.reshape(fp16);
    c.v = c.v.reshape(fp16);
  };
  auto reshape4 = [&](cuda::Int4KvCache& c) {
    c.slots = slots;  // int4_kv_cache_shape depends on slots * max_len only
    c.max_len = len;
  };
  for (Unit& u : units_) {
    reshape(u.gpu);
    reshape4(u.gpu4);
    u.host.shape = host_shape_;
  }
  for (auto& v : disk_views_) v.shape = host_shape_;
  if (file_) file_->set_shape(host_shape_);
  if (gpu_attention_)  // the staging holds a whole unit
    for (int s = 0; s < 2; ++s) {
      reshape(staging_[s]);
      reshape4(staging4_[s]);
    }
}

void KvTiers::describe_to(StepShape* shape) const {
  shape->cpu_kv.resize(units_.size());
  shape->disk_kv.resize(units_.size());
  for (size_t i = 0; i < units_.size(); ++i) {
    shape->cpu_kv[i] = units_[i].tier == Tier::kCpu;
    shape->disk_kv[i] = units_[i].tier == Tier::kDisk;
  }
  shape->gpu_attention = gpu_attention_;
  shape->kv_disk_staging = kDiskStaging;
}

void KvTiers::bind(Handlers& handlers, const StepState& step) {
  handlers[static_cast<size_t>(ActionKind::kReadKv)].task = [this, &step](const Action& a) {
    return disk_transfer(a, step, /*write=*/false);
  };
  handlers[static_cast<size_t>(ActionKind::kWriteKv)].task = [this, &step](const Action& a) {
    return disk_transfer(a, step, /*write=*/true);
  };
  handlers[static_cast<size_t>(ActionKind::kLoadKv)].enqueue =
      [this, &step](const Action& a, cuda::Lane lane) -> Result<uint64_t> { return load(a, step, lane); };
  handlers[static_cast<size_t>(ActionKind::kStoreKv)].enqueue =
      [this, &step](const Action& a, cuda::Lane lane) -> Result<uint64_t> { return store(a, step, lane); };
}

const compute::HostKvView& KvTiers::host_view(int32_t layer, int32_t batch, int32_t host_staging) const {
  const Unit& u = unit(layer, batch);
  return u.tier == Tier::kDisk ? disk_views_[host_staging] : u.host;
}

uint64_t KvTiers::bytes_read(std::span<const compute::SeqSpan> seqs) const {
  const uint64_t E = static_cast<uint64_t>(row_elems_);
  const uint64_t per_position = (int4_ ? E * 9 / 16 : E * 2) * 2;
  uint64_t bytes = 0;
  for (const auto& s : seqs) bytes += (static_cast<uint64_t>(s.past_len) + s.num_tokens) * per_position;
  return bytes;
}

std::byte* KvTiers::gpu_staging(int32_t s, int kvi) const {
  const Tensor& t = int4_ ? (kvi == 0 ? staging4_[s].k : staging4_[s].v)
                          : (kvi == 0 ? staging_[s].k : staging_[s].v);
  return static_cast<std::byte*>(t.raw());
}

Status KvTiers::attend_on_gpu(const Action& a, const compute::TokenBatch& batch,
                              const compute::Transformer::AttentionInputs& in,
                              const compute::AttentionParams& params, Tensor& out) {
  Unit& u = unit(a.unit, a.batch);
  if (int4_ && (u.tier == Tier::kGpu || gpu_attention_)) {
    cuda::Int4KvCache& c4 = u.tier == Tier::kGpu ? u.gpu4 : staging4_[a.staging];
    return cuda::attention_int4_kv(backend_, in.q, in.k, in.v, c4, batch.seqs, params, out);
  }
  compute::LayerKvCache& cache = u.tier == Tier::kGpu ? u.gpu : staging_[a.staging];
  // Prompts staged for attention on the CPU sit at their place in the batch, not at their pages.
  std::vector<compute::SeqSpan> staged;
  if (u.tier != Tier::kGpu && !gpu_attention_ && paged()) {
    staged = batch.seqs;
    for (size_t i = 0; i < staged.size(); ++i) staged[i].slot = static_cast<int32_t>(i);
  }
  backend_.attention(in.q, in.k, in.v, cache, staged.empty() ? batch.seqs : staged, params, out);
  if (u.tier != Tier::kGpu && int4_)
    for (int kvi = 0; kvi < 2; ++kvi) {
      const Tensor& src = kvi == 0 ? cache.k : cache.v;
      STRATA_RETURN_IF_ERROR(cuda::quantise_int4_async(backend_, src.reshape({dims_.gbs * dims_.prefill_len, row_elems_}),
                                                       blob_staging_[a.staging][kvi]));
    }
  return Status::ok();
}

Result<HostTask> KvTiers::disk_transfer(const Action& a, const StepState& step, bool write) {
  const auto& seqs = step.subs[a.batch].batch.seqs;
  auto rows = kv_rows(seqs, write);
  // A write keeps the rest of its pages: a decode step read them into staging; a prompt step
  // read nothing, and the sequences it does not carry keep their rows from the file.
  std::vector<KvRows> read_before;
  if (write && !step.prefill) read_before = kv_rows(seqs, false);
  auto* buf = static_cast<std::byte*>(disk_staging_[a.host_staging].raw());
  const int64_t region = unit(a.unit, a.batch).disk_region;
  return HostTask([this, buf, region, rows = std::move(rows), read_before = std::move(read_before),
                   write]() -> Result<uint64_t> {
    return write ? file_->write(region, rows, read_before, buf) : file_->read(region, rows, buf);
  });
}

// A unit's off-GPU KV, every position before the new ones, into GPU staging `a.staging`.
uint64_t KvTiers::load(const Action& a, const StepState& step, cuda::Lane lane) {
  const SubBatch& sb = step.subs[a.batch];
  const compute::HostKvView& src = host_view(a.unit, a.batch, a.host_staging);
  uint64_t moved = 0;
  if (paged()) {  // the rows from the first sequence's first to the last one's last, in one copy
    int64_t r0 = INT64_MAX, r1 = 0;
    for (const auto& s : sb.batch.seqs) {
      r0 = std::min<int64_t>(r0, s.slot * page_len_);
      r1 = std::max<int64_t>(r1, s.slot * page_len_ + s.past_len);
    }
    for (int kvi = 0; kvi < 2 && r1 > r0; ++kvi)
      moved += copy_kv_rows(lane, gpu_staging(a.staging, kvi), kvi == 0 ? src.k : src.v, src.shape, 0, 1, r0, r1);
    return moved;
  }
  int32_t used_slots = 0, positions = 0;
  for (const auto& s : sb.batch.seqs) {
    used_slots = std::max(used_slots, s.slot + 1);
    positions = std::max(positions, s.past_len);
  }
  for (int kvi = 0; kvi < 2; ++kvi)
    moved += copy_kv_rows(lane, gpu_staging(a.staging, kvi), kvi == 0 ? src.k : src.v, src.shape, 0,
                          used_slots, 0, positions);
  return moved;
}

namespace {

// The slots of a prompt step's sequences as runs of neighbours [first, first + count), each with
// its longest prompt and its place in the batch (`staged`): a block's prompt step is one run;
// sequences joining a running block leave holes (the running sequences' KV must not be written
// over). Pages are never joined: a sequence may run on over the pages after its slot.
struct SlotRun {
  int32_t staged, first, count, positions;
};
std::vector<SlotRun> slot_runs(std::span<const compute::SeqSpan> seqs, bool paged) {
  std::vector<SlotRun> runs;
  int32_t staged = 0;
  for (const auto& s : seqs) {  // in increasing slot order (split_step checks it)
    const int32_t end = s.past_len + s.num_tokens;
    if (!paged && !runs.empty() && runs.back().first + runs.back().count == s.slot) {
      ++runs.back().count;
      runs.back().positions = std::max(runs.back().positions, end);
    } else {
      runs.push_back({paged ? staged : s.slot, s.slot, 1, end});
    }
    ++staged;
  }
  return runs;
}

}  // namespace

// The rows a step wrote, from GPU staging `a.staging` to the unit's host KV (or its disk staging).
uint64_t KvTiers::store(const Action& a, const StepState& step, cuda::Lane lane) {
  const SubBatch& sb = step.subs[a.batch];
  const compute::HostKvView& host = host_view(a.unit, a.batch, a.host_staging);
  uint64_t moved = 0;
  for (int kvi = 0; kvi < 2; ++kvi) {
    std::byte* dst = kvi == 0 ? host.k : host.v;
    if (!gpu_attention_) {
      for (const SlotRun& r : slot_runs(sb.batch.seqs, paged()))
        moved += store_prompt_for_cpu(a, host, kvi, r.staged, r.first, r.count, r.positions, lane);
      continue;
    }
    // The staging has the host layout: the new rows of each sequence (decode), or every
    // sequence's prompt rows.
    const std::byte* src = gpu_staging(a.staging, kvi);
    if (!step.prefill) {
      for (const auto& s : sb.batch.seqs)
        moved += copy_kv_rows(lane, dst, src, host.shape, s.slot, 1, s.past_len, s.past_len + s.num_tokens);
    } else {
      for (const SlotRun& r : slot_runs(sb.batch.seqs, paged()))
        moved += copy_kv_rows(lane, dst, src, host.shape, r.first, r.count, 0, r.positions);
    }
  }
  return moved;
}

// Attention on the CPU: the prompts staged from `staged` on in a [gbs, prompt] fp16 staging, or
// its int4 blob, quantised on the GPU from that staging, into slots [first, first + slots) of the
// host KV: codes, then scales, then mins, each a [rows, bytes-per-row] matrix in both layouts.
uint64_t KvTiers::store_prompt_for_cpu(const Action& a, const compute::HostKvView& host, int kvi, int32_t staged,
                                       int32_t first, int32_t used_slots, int32_t positions, cuda::Lane lane) {
  std::byte* dst = kvi == 0 ? host.k : host.v;
  const size_t E = static_cast<size_t>(row_elems_), P = static_cast<size_t>(positions);
  const size_t max_len = static_cast<size_t>(host.shape.max_len), prompt = static_cast<size_t>(dims_.prefill_len);
  const size_t slots = static_cast<size_t>(used_slots), s0 = static_cast<size_t>(first);
  const size_t t0 = static_cast<size_t>(staged);
  // One sequence (a page's may run past its pitch) in one copy.
  auto copy = [&](std::byte* d, size_t d_pitch, const std::byte* s, size_t s_pitch, size_t width) {
    if (slots == 1) {
      lanes_.copy(lane, d, s, width);
    } else {
      lanes_.copy_2d(lane, d, d_pitch, s, s_pitch, width, slots);
    }
  };
  if (!int4_) {
    const size_t row = E * 2;
    const auto* src = static_cast<const std::byte*>((kvi == 0 ? staging_[a.staging].k : staging_[a.staging].v).raw());
    copy(dst + s0 * max_len * row, max_len * row, src + t0 * prompt * row, prompt * row, P * row);
    return P * row * slots;
  }
  const auto* blob = static_cast<const std::byte*>(blob_staging_[a.staging][kvi].raw());
  const size_t staged_rows = static_cast<size_t>(dims_.gbs) * prompt;
  const size_t code_row = E / 2, group_row = E / 64 * 2;
  const compute::HostKvShape& hs = host.shape;
  copy(dst + s0 * max_len * code_row, max_len * code_row, blob + t0 * prompt * code_row, prompt * code_row,
       P * code_row);
  copy(dst + hs.scale_offset(0) + s0 * max_len * group_row, max_len * group_row,
       blob + staged_rows * code_row + t0 * prompt * group_row, prompt * group_row, P * group_row);
  copy(dst + hs.min_offset(0) + s0 * max_len * group_row, max_len * group_row,
       blob + staged_rows * (code_row + group_row) + t0 * prompt * group_row, prompt * group_row, P * group_row);
  return P * (code_row + 2 * group_row) * slots;
}

uint64_t KvTiers::copy_kv_rows(cuda::Lane lane, std::byte* dst, const std::byte* src,
                               const compute::HostKvShape& hs, int64_t slot0, int64_t slots,
                               int64_t begin, int64_t end) {
  if (end <= begin || slots <= 0) return 0;
  const size_t E = static_cast<size_t>(hs.row_elems());
  struct Part {
    size_t offset, row_bytes;
  };
  std::vector<Part> parts;
  if (hs.int4) {
    parts = {{hs.code_offset(0), E / 2}, {hs.scale_offset(0), E / 64 * 2}, {hs.min_offset(0), E / 64 * 2}};
  } else {
    parts = {{0, E * 2}};
  }
  uint64_t moved = 0;
  for (const Part& p : parts) {
    const size_t at = p.offset + static_cast<size_t>(slot0 * hs.max_len + begin) * p.row_bytes;
    const size_t pitch = static_cast<size_t>(hs.max_len) * p.row_bytes;
    const size_t width = static_cast<size_t>(end - begin) * p.row_bytes;
    if (slots == 1) {
      lanes_.copy(lane, dst + at, src + at, width);
    } else {
      lanes_.copy_2d(lane, dst + at, pitch, src + at, pitch, width, static_cast<size_t>(slots));
    }
    moved += width * static_cast<uint64_t>(slots);
  }
  return moved;
}

}  // namespace strata::offload
