#include "runtime/offload_engine.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "common/units.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "cuda/int4_weights.h"
#include "runtime/context.h"
#include "runtime/offload_engine_impl.h"
#include "storage/topology.h"

namespace strata::runtime {
namespace {

using namespace offload_detail;

// Where GPU `device` sits on a machine of several NUMA nodes: the CPUs nearest it and its node
// (empty and -1 with one node, or when hwloc cannot place the GPU: nothing to gain by binding).
struct GpuNeighbourhood {
  std::vector<int> cpus;
  int numa_node = -1;
};

GpuNeighbourhood near_gpu(int device, Logger& log) {
  GpuNeighbourhood n;
  const cuda::DeviceQuery q = cuda::query_devices();
  if (device < 0 || device >= static_cast<int>(q.devices.size())) return n;
  auto topo = storage::query_topology(q.devices[static_cast<size_t>(device)].pci_bus_id);
  if (!topo.is_ok() || topo.value().numa_nodes.size() < 2 || !topo.value().gpu || !topo.value().gpu->found) return n;
  const storage::GpuLocality& gpu = *topo.value().gpu;
  auto cpus = storage::parse_cpu_list(gpu.cpus);
  if (!cpus.is_ok()) {
    log.warn("offload: CPU attention left unbound: " + cpus.status().to_string());
  } else {
    n.cpus = std::move(cpus).value();
  }
  if (!gpu.numa_nodes.empty()) n.numa_node = gpu.numa_nodes.front();
  return n;
}

uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

}  // namespace

Status OffloadEngine::Impl::build(model::WeightSource* source) {
  Logger& log = ctx->logger;
  const planner::Choices& ch = placement.choices;
  L = config.num_layers;
  num_slots = std::max(planner::kMinPrefetchSlots, ch.prefetch_slots);
  nb = placement.batch.num_gpu_batches;
  gbs = placement.batch.gpu_batch_size;
  prefill_len = placement.workload.prompt_len;
  max_len = placement.workload.prompt_len + placement.workload.gen_len;
  int4_kv = ch.kv == planner::Compression::kInt4;
  const int64_t E = config.num_kv_heads * config.head_dim;
  gpu_attention = ch.attention == planner::Attention::kGpu;
  if (int4_kv && config.head_dim % 64 != 0)
    return invalid_argument("offload: int4 KV needs head_dim a multiple of 64, not " +
                            std::to_string(config.head_dim));

  STRATA_ASSIGN_OR_RETURN(lanes, cuda::Lanes::create(*backend, /*timing=*/true));
  // Pinned buffers on the GPU's NUMA node: this thread's new pages come from there while the
  // engine makes them.
  const GpuNeighbourhood near = near_gpu(lanes->device(), log);
  std::unique_ptr<storage::ThreadMemoryBinding> membind;
  if (near.numa_node >= 0) {
    auto bound = storage::ThreadMemoryBinding::bind(near.numa_node);
    if (bound.is_ok()) {
      membind = std::move(bound).value();
      log.info("offload: pinned buffers on NUMA node " + std::to_string(near.numa_node) + ", nearest the GPU");
    } else {
      log.warn("offload: pinned buffers left on any NUMA node: " + bound.status().to_string());
    }
  }
  storage::IoBackendOptions io_options;
  io_options.queue_depth = 64;
  STRATA_ASSIGN_OR_RETURN(io, storage::make_io_backend(io_options, log));
  if (!options.io_faults.empty()) {
    auto faulty = std::make_unique<storage::FaultInjectingBackend>(std::move(io));
    for (const auto& rule : options.io_faults) faulty->add_rule(rule);
    io = std::move(faulty);
  }
  model = std::make_unique<compute::Transformer>(config, *backend, compute::ModelWeights{});

  log.info("offload: placing " + format_bytes(spec.total_weight_bytes(ch.weights)) + " of weights");
  auto placed = OffloadWeights::create(config, spec, placement, source, options.synthetic_seed,
                                       *backend, *lanes, *io, options.offload_dir, log);
  STRATA_ASSIGN_OR_RETURN(weights, std::move(placed));
  pinned_bytes += weights->pinned_bytes();
  for (const auto& t : weights->unit(L).tensors)
    if ((t.name == "embed.project_in") && t.tier != Tier::kGpu)
      return unsupported("offload: embed.project_in must stay on the GPU");

  // Weight slots, in the order the plan assigns them.
  unit_slot.assign(static_cast<size_t>(L) + 1, -1);
  int32_t streamed = 0;
  for (int64_t u = 0; u <= L; ++u)
    if (weights->unit(u).streamed()) unit_slot[u] = streamed++ % num_slots;
  const size_t slot_bytes = weights->max_streamed_bytes();
  if (slot_bytes > 0)
    for (int s = 0; s < std::min(num_slots, streamed); ++s) {
      const Shape words = {static_cast<int64_t>((slot_bytes + 3) / 4)};
      STRATA_ASSIGN_OR_RETURN(Tensor t, lanes->allocate_device(DType::kI32, words, "weights.prefetch_slot"));
      slots.push_back(std::move(t));
    }
  unit_views.resize(static_cast<size_t>(L) + 1);
  for (int64_t u = 0; u <= L; ++u)
    unit_views[u] = weights->views(u, unit_slot[u] >= 0 ? slots[unit_slot[u]] : Tensor());
  for (int s = 0; s < kDiskStaging && weights->max_disk_bytes() > 0; ++s) {
    STRATA_ASSIGN_OR_RETURN(Tensor t, pinned(weights->max_disk_bytes(), "weights.disk_staging"));
    disk_staging.push_back(std::move(t));
  }

  // KV cache.
  kv.resize(static_cast<size_t>(L * nb));
  const Shape kv_shape = {gbs, max_len, config.num_kv_heads, config.head_dim};
  const compute::HostKvShape host_shape{gbs, max_len, config.num_kv_heads, config.head_dim, int4_kv};
  int64_t disk_regions = 0;
  for (int64_t i = 0; i < L; ++i)
    for (int64_t b = 0; b < nb; ++b) {
      KvUnit& u = kv[i * nb + b];
      u.tier = placement.kv[i * nb + b];
      if (u.tier == Tier::kGpu && int4_kv) {
        STRATA_ASSIGN_OR_RETURN(u.gpu4, cuda::allocate_int4_kv_cache(*backend, gbs, max_len, config.num_kv_heads, config.head_dim));
        continue;
      }
      if (u.tier == Tier::kGpu) {
        STRATA_ASSIGN_OR_RETURN(u.gpu.k, backend->allocate(backend->activation_dtype(), kv_shape));
        STRATA_ASSIGN_OR_RETURN(u.gpu.v, backend->allocate(backend->activation_dtype(), kv_shape));
        continue;
      }
      any_off_gpu_kv = true;
      if (u.tier == Tier::kDisk) {
        u.disk_region = disk_regions++;
        continue;
      }
      u.host.shape = host_shape;
      STRATA_ASSIGN_OR_RETURN(u.host_k, pinned(host_shape.bytes_each(), "kv.resident (cpu)"));
      STRATA_ASSIGN_OR_RETURN(u.host_v, pinned(host_shape.bytes_each(), "kv.resident (cpu)"));
      u.host.k = static_cast<std::byte*>(u.host_k.raw());
      u.host.v = static_cast<std::byte*>(u.host_v.raw());
    }
  if (disk_regions > 0) {
    STRATA_ASSIGN_OR_RETURN(kv_file, KvFile::create(*io, options.offload_dir, host_shape, disk_regions, log));
    for (int s = 0; s < kKvDiskStaging; ++s) {
      STRATA_ASSIGN_OR_RETURN(Tensor t, pinned(kv_file->region_bytes(), "kv.disk_staging"));
      auto* base = static_cast<std::byte*>(t.raw());
      kv_disk_views.push_back({host_shape, base, base + kv_file->v_offset()});
      kv_disk_staging.push_back(std::move(t));
    }
  }
  if (any_off_gpu_kv) {
    if (backend->activation_dtype() != DType::kF16)
      return unsupported("offload: KV off the GPU needs F16 activations");
    // Attention on the GPU reads a whole batch's KV from the staging; on the CPU, the staging only
    // carries a prompt's KV off the GPU.
    const int64_t staging_len = gpu_attention ? max_len : prefill_len;
    const Shape staging_shape = {gbs, staging_len, config.num_kv_heads, config.head_dim};
    for (int s = 0; s < 2 && int4_kv && gpu_attention; ++s) {
      STRATA_ASSIGN_OR_RETURN(kv_staging4[s], cuda::allocate_int4_kv_cache(*backend, gbs, max_len, config.num_kv_heads, config.head_dim));
    }
    for (int s = 0; s < 2 && !(int4_kv && gpu_attention); ++s) {
      STRATA_ASSIGN_OR_RETURN(kv_staging[s].k, backend->allocate(DType::kF16, staging_shape));
      STRATA_ASSIGN_OR_RETURN(kv_staging[s].v, backend->allocate(DType::kF16, staging_shape));
      if (int4_kv)
        for (int kvi = 0; kvi < 2; ++kvi) {
          const Shape blob = cuda::int4_weight_shape(gbs * prefill_len, E);
          STRATA_ASSIGN_OR_RETURN(kv_blob_staging[s][kvi], backend->allocate(DType::kI32, blob));
        }
    }
  }
  if (any_off_gpu_kv && !gpu_attention) {
    cpu_io.resize(static_cast<size_t>(nb));
    const int64_t qd = config.num_heads * config.head_dim;
    for (auto& io_b : cpu_io) {
      STRATA_ASSIGN_OR_RETURN(io_b.q, pinned(static_cast<size_t>(gbs * qd * 2), "cpu_attention.queries"));
      STRATA_ASSIGN_OR_RETURN(io_b.out, pinned(static_cast<size_t>(gbs * qd * 2), "cpu_attention.outputs"));
      STRATA_ASSIGN_OR_RETURN(io_b.k, pinned(static_cast<size_t>(gbs * E * 2), "cpu_attention.new_kv"));
      STRATA_ASSIGN_OR_RETURN(io_b.v, pinned(static_cast<size_t>(gbs * E * 2), "cpu_attention.new_kv"));
    }
  }
  // Hidden states kept on the CPU between computations.
  host_hidden.resize(static_cast<size_t>(nb));
  const int64_t hidden_rows = gbs * std::max<int64_t>(prefill_len, 1);
  const DType act = backend->activation_dtype();
  for (int64_t b = 0; b < nb; ++b) {
    if (placement.activations[b] != Tier::kCpu) continue;
    if (!hidden_staging[0].defined())
      for (auto& t : hidden_staging) {
        STRATA_ASSIGN_OR_RETURN(t, backend->allocate(act, {hidden_rows, config.hidden_size}));
      }
    STRATA_ASSIGN_OR_RETURN(host_hidden[b], pinned(static_cast<size_t>(hidden_rows * config.hidden_size) * dtype_size(act), "activations.resident (cpu)"));
  }
  const bool host_tokens = weights->host_table("embed.tokens") != nullptr;
  const bool host_positions = weights->host_table("embed.positions") != nullptr;
  const size_t rows = static_cast<size_t>(gbs * std::max<int64_t>(prefill_len, 1));
  if (host_tokens) {
    STRATA_ASSIGN_OR_RETURN(embed_rows, pinned(rows * config.embed_dim() * 2, "embedding rows"));
  }
  if (host_positions) {
    STRATA_ASSIGN_OR_RETURN(embed_pos_rows, pinned(rows * config.hidden_size * 2, "embedding rows"));
  }

  disk_worker = std::make_unique<TaskWorker>("the offload disk");
  cpu_worker = std::make_unique<TaskWorker>("attention on the CPU");
  attention_pool = &ctx->pool;
  if (!cpu_io.empty()) {
    // Attention on the CPU reads pinned KV and talks to the GPU: keep it on the nearest cores.
    const std::vector<int>& cpus = near.cpus;
    if (!cpus.empty()) {
      near_gpu_pool = std::make_unique<ThreadPool>(std::min<int>(ctx->pool.size(), static_cast<int>(cpus.size())));
      Status bound = near_gpu_pool->bind_workers(cpus);
      const int64_t t = cpu_worker->submit([cpus] { return bind_this_thread(cpus); });
      if (bound.is_ok()) bound = cpu_worker->wait(t);
      if (bound.is_ok()) {
        attention_pool = near_gpu_pool.get();
        log.info("offload: CPU attention on " + std::to_string(near_gpu_pool->size()) +
                 " threads bound to the CPUs nearest the GPU");
      } else {
        log.warn("offload: CPU attention left unbound: " + bound.to_string());
        cpu_worker->clear_error();
      }
    }
  }

  base_shape.num_layers = static_cast<int32_t>(L);
  base_shape.num_batches = static_cast<int32_t>(nb);
  base_shape.slots = num_slots;
  base_shape.disk_staging = kDiskStaging;
  base_shape.streamed.resize(static_cast<size_t>(L) + 1);
  base_shape.from_disk.resize(static_cast<size_t>(L) + 1);
  for (int64_t u = 0; u <= L; ++u) {
    base_shape.streamed[u] = weights->unit(u).streamed();
    base_shape.from_disk[u] = weights->unit(u).disk_bytes > 0;
  }
  base_shape.cpu_kv.resize(static_cast<size_t>(L * nb));
  base_shape.disk_kv.resize(static_cast<size_t>(L * nb));
  for (size_t i = 0; i < kv.size(); ++i) {
    base_shape.cpu_kv[i] = kv[i].tier == Tier::kCpu;
    base_shape.disk_kv[i] = kv[i].tier == Tier::kDisk;
  }
  base_shape.gpu_attention = gpu_attention;
  base_shape.cpu_activations.resize(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) base_shape.cpu_activations[b] = host_hidden[b].defined();
  base_shape.kv_disk_staging = kKvDiskStaging;
  STRATA_RETURN_IF_ERROR(lanes->synchronize());
  lanes->sample_memory();
  (void)lanes->take_spans();
  report_from_s = lanes->now_s();
  log.info("offload: ready: " + format_bytes(lanes->device_bytes_in_use()) + " on the GPU, " +
           format_bytes(pinned_bytes) + " pinned, " + format_bytes(disk_bytes()) + " on disk");
  return Status::ok();
}

uint64_t OffloadEngine::Impl::copy_kv_rows(cuda::Lane lane, std::byte* dst, const std::byte* src,
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
      lanes->copy(lane, dst + at, src + at, width);
    } else {
      lanes->copy_2d(lane, dst + at, pitch, src + at, pitch, width, static_cast<size_t>(slots));
    }
    moved += width * static_cast<uint64_t>(slots);
  }
  return moved;
}

Status OffloadEngine::Impl::embed(const SubBatch& sb, Tensor& x) {
  const int64_t T = sb.batch.size(), H = config.hidden_size;
  const auto& views = unit_views[L];
  auto lookup = [&](const char* name, std::span<const int32_t> ids, Tensor& host_rows,
                    Tensor& out) -> Status {
    if (const HostTable* t = weights->host_table(name)) {
      STRATA_RETURN_IF_ERROR(weights->gather_host_rows(*t, ids, host_rows.raw()));
      lanes->copy_device(out.raw(), host_rows.raw(), out.bytes());
    } else {
      backend->embedding(views.at(name), ids, out);
    }
    return Status::ok();
  };
  Tensor emb = model->alloc(T, config.embed_dim());
  STRATA_RETURN_IF_ERROR(lookup("embed.tokens", sb.batch.tokens, embed_rows, emb));
  x = emb;
  if (auto it = views.find("embed.project_in"); it != views.end()) {
    x = model->alloc(T, H);
    backend->linear(emb, it->second, nullptr, x);
  }
  if (config.family == model::Family::kOpt) {
    std::vector<int32_t> pos(sb.batch.positions);
    for (auto& p : pos) p += 2;  // OPT's learned positions start at offset 2
    Tensor pe = model->alloc(T, H);
    STRATA_RETURN_IF_ERROR(lookup("embed.positions", pos, embed_pos_rows, pe));
    backend->add(x, pe, x);
  }
  // The pinned rows are reused by the next batch: wait for their copies.
  if (embed_rows.defined() || embed_pos_rows.defined()) cuda::synchronize(*backend);
  return Status::ok();
}

OffloadEngine::OffloadEngine() : impl_(std::make_unique<Impl>()) {}
OffloadEngine::~OffloadEngine() = default;

Result<std::unique_ptr<OffloadEngine>> OffloadEngine::create(const model::ModelConfig& config,
                                                             model::WeightSource* source,
                                                             const OffloadOptions& options, Context& ctx) {
  if (!ctx.backend || !cuda::is_cuda_backend(*ctx.backend))
    return unsupported("offload: the offloading engine runs on a CUDA device (use --device cuda)");
  std::unique_ptr<OffloadEngine> e(new OffloadEngine());
  Impl& m = *e->impl_;
  m.ctx = &ctx;
  m.backend = ctx.backend.get();
  m.config = config;
  m.options = options;
  m.spec = planner::make_model_spec(config, options.policy.model);
  m.placement = planner::realise(m.spec, options.policy);
  STRATA_RETURN_IF_ERROR(m.build(source));
  return e;
}

const model::ModelConfig& OffloadEngine::config() const { return impl_->config; }
compute::Backend& OffloadEngine::backend() { return *impl_->backend; }
const planner::Policy& OffloadEngine::policy() const { return impl_->options.policy; }

Status OffloadEngine::reset(int32_t slots, int32_t max_len) {
  Impl& m = *impl_;
  if (slots > m.gbs * m.nb)
    return invalid_argument("offload: " + std::to_string(slots) + " sequences do not fit the policy's block of " +
                            std::to_string(m.gbs * m.nb) + " (" + std::to_string(m.gbs) + " x " +
                            std::to_string(m.nb) + ")");
  if (max_len > m.max_len)
    return invalid_argument("offload: sequences of " + std::to_string(max_len) +
                            " positions exceed the policy's prompt + generated length of " + std::to_string(m.max_len));
  m.slots_in_use = slots;
  m.max_len_in_use = max_len;
  m.cpu_worker->clear_error();
  m.disk_worker->clear_error();
  return Status::ok();
}

Result<Tensor> OffloadEngine::forward(const compute::TokenBatch& batch, std::span<const int32_t> rows) {
  return impl_->step(batch, rows);
}

OffloadReport OffloadEngine::report() const {
  Impl& m = *impl_;
  OffloadReport r = m.report;
  const std::vector<std::string> tracks = {"gpu", "h2d", "d2h", "disk", "cpu", "disk_write"};
  std::vector<TrackBusy> busy;
  {
    std::lock_guard lock(m.spans_mu);
    busy = busy_by_track(m.spans, tracks, m.report_from_s, m.lanes->now_s());
  }
  const char* names[] = {"gpu", "h2d", "d2h", "disk_read", "cpu_attention"};
  const PlanResource res[] = {PlanResource::kGpu, PlanResource::kH2d, PlanResource::kD2h, PlanResource::kDisk,
                              PlanResource::kCpu};
  for (int i = 0; i < 5; ++i) r.resources.push_back({names[i], busy[i].busy_s, m.bytes[static_cast<int>(res[i])]});
  r.resources[3].bytes += m.kv_disk_read;  // disk_read: the weights' parts and the KV
  r.resources.push_back({"disk_write", busy[5].busy_s, m.kv_disk_written});
  r.peak_gpu_bytes = m.lanes->peak_device_bytes();
  r.pinned_bytes = m.pinned_bytes;
  r.peak_rss_bytes = peak_rss_bytes();
  r.disk_bytes = m.disk_bytes();
  return r;
}

void OffloadEngine::reset_report() {
  Impl& m = *impl_;
  m.report = {};
  for (auto& b : m.bytes) b = 0;
  m.kv_disk_read = 0;
  m.kv_disk_written = 0;
  std::lock_guard lock(m.spans_mu);
  m.spans.clear();
  m.report_from_s = m.lanes->now_s();
}

Status OffloadEngine::write_trace(const std::filesystem::path& path) const {
  Impl& m = *impl_;
  if (!m.options.trace) return invalid_argument("offload: the engine was made without tracing");
  const std::vector<std::string> tracks = {"disk", "disk_write", "h2d", "gpu", "d2h", "cpu"};
  std::lock_guard lock(m.spans_mu);
  return write_chrome_trace(path, m.spans, tracks);
}

}  // namespace strata::runtime
