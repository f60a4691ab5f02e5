#include "runtime/offload_engine.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "common/units.h"
#include "compute/host_kv.h"
#include "compute/transformer.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "cuda/int4_weights.h"
#include "cuda/lanes.h"
#include "planner/memory_plan.h"
#include "planner/model_spec.h"
#include "runtime/context.h"
#include "runtime/kv_file.h"
#include "runtime/offload_weights.h"
#include "runtime/trace.h"
#include "runtime/zigzag_plan.h"
#include "storage/io_backend.h"
#include "storage/topology.h"

namespace strata::runtime {
namespace {

using planner::Tier;
constexpr int kDiskStaging = 2;    // pinned staging buffers for disk parts
constexpr int kKvDiskStaging = 3;  // pinned staging buffers for disk KV (planner::plan_memory's 3)

// A thread that runs tasks in submission order. wait(ticket) returns once that task has run, with
// the first failure of any task so far (after a failure the remaining tasks are skipped).
class Worker {
 public:
  explicit Worker(std::string name) : name_(std::move(name)), thread_([this] { loop(); }) {}
  ~Worker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  int64_t submit(std::function<Status()> fn) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_all();
    return submitted_++;
  }

  Status wait(int64_t ticket) {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ > ticket; });
    return error_;
  }

  Status drain() {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_ == submitted_; });
    return error_;
  }

  void clear_error() {
    std::lock_guard lock(mu_);
    error_ = Status::ok();
  }

 private:
  void loop() {
    for (;;) {
      std::function<Status()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      Status st = Status::ok();
      bool failed_before;
      {
        std::lock_guard lock(mu_);
        failed_before = !error_.is_ok();
      }
      if (!failed_before) st = fn();
      {
        std::lock_guard lock(mu_);
        if (!st.is_ok() && error_.is_ok()) error_ = st.with_context(name_);
        ++done_;
      }
      done_cv_.notify_all();
    }
  }

  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<Status()>> queue_;
  int64_t submitted_ = 0, done_ = 0;
  Status error_ = Status::ok();
  bool stop_ = false;
  std::thread thread_;
};

// The CPUs nearest GPU `device` on a machine of several NUMA nodes (empty: one node, or hwloc
// cannot place the GPU, and nothing is gained by binding).
std::vector<int> cpus_near_gpu(int device, Logger& log) {
  const cuda::DeviceQuery q = cuda::query_devices();
  if (device < 0 || device >= static_cast<int>(q.devices.size())) return {};
  auto topo = storage::query_topology(q.devices[static_cast<size_t>(device)].pci_bus_id);
  if (!topo.is_ok() || topo.value().numa_nodes.size() < 2 || !topo.value().gpu || !topo.value().gpu->found) return {};
  auto cpus = storage::parse_cpu_list(topo.value().gpu->cpus);
  if (!cpus.is_ok()) {
    log.warn("offload: CPU attention left unbound: " + cpus.status().to_string());
    return {};
  }
  return std::move(cpus).value();
}

uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

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
  compute::LayerKvCache gpu;     // GPU tier
  compute::HostKvView host;      // CPU tier (memory owned by host_k / host_v)
  Tensor host_k, host_v;
  int64_t disk_region = -1;      // disk tier: its region of the KV file
};

// The rows of a GPU batch's KV that a step reads (every position up to its new ones) or writes
// (its new ones).
std::vector<KvRows> kv_rows(std::span<const compute::SeqSpan> seqs, bool written_only) {
  std::vector<KvRows> r;
  for (const auto& s : seqs)
    r.push_back({s.slot, written_only ? s.past_len : 0, static_cast<int64_t>(s.past_len) + s.num_tokens});
  return r;
}

}  // namespace

struct OffloadEngine::Impl {
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
  int64_t staging_len = 0;                   // positions per sequence in a GPU KV staging buffer
  compute::LayerKvCache kv_staging[2];       // GPU: off-GPU KV of the batch computing or next
  std::unique_ptr<KvFile> kv_file;           // the disk tier of the KV cache
  std::vector<Tensor> kv_disk_staging;       // pinned, one disk KV region each
  std::vector<compute::HostKvView> kv_disk_views;
  Tensor kv_blob_staging[2][2];              // int4: [staging][k/v] quantised rows
  std::vector<CpuAttentionIo> cpu_io;        // per batch
  Tensor embed_rows, embed_pos_rows;         // pinned, host-side embedding lookups
  Tensor hidden_staging[2];                  // GPU: hidden states of batches kept on the CPU
  std::vector<Tensor> host_hidden;           // pinned, per batch kept on the CPU (else undefined)

  std::unique_ptr<Worker> disk_worker, cpu_worker;
  std::unique_ptr<ThreadPool> near_gpu_pool;  // CPU attention on the cores nearest the GPU
  ThreadPool* attention_pool = nullptr;       // near_gpu_pool, or the Context's
  StepShape base_shape;
  std::map<std::pair<bool, std::vector<bool>>, std::vector<Action>> plans;

  // Accounting.
  OffloadReport report;
  std::mutex spans_mu;
  std::vector<TraceSpan> spans;
  uint64_t bytes[kNumPlanResources] = {};
  uint64_t disk_written = 0;  // KV written to the disk
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
    return u.tier == Tier::kDisk ? kv_disk_views[host_staging] : u.host;
  }

  Status build(model::WeightSource* source);
  Result<Tensor> step(const compute::TokenBatch& batch, std::span<const int32_t> rows);
  Status embed(const SubBatch& sb, Tensor& x);
};

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
  for (size_t i = 0; i < placement.kv.size(); ++i) {
    if (placement.kv[i] == Tier::kGpu && int4_kv)
      return unsupported("offload: int4 KV cache on the GPU is not supported; use int4 KV only off the GPU "
                         "with attention on the CPU, or fp16 KV");
    if (placement.kv[i] != Tier::kGpu && int4_kv && gpu_attention)
      return unsupported("offload: attention on the GPU over int4 KV kept off the GPU is not supported; use "
                         "attention on the CPU for int4 KV, or fp16 KV");
  }
  if (int4_kv && config.head_dim % 64 != 0)
    return invalid_argument("offload: int4 KV needs head_dim a multiple of 64, not " +
                            std::to_string(config.head_dim));

  STRATA_ASSIGN_OR_RETURN(lanes, cuda::Lanes::create(*backend, /*timing=*/true));
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
    staging_len = gpu_attention ? max_len : prefill_len;
    const Shape staging_shape = {gbs, staging_len, config.num_kv_heads, config.head_dim};
    for (int s = 0; s < 2; ++s) {
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

  disk_worker = std::make_unique<Worker>("the offload disk");
  cpu_worker = std::make_unique<Worker>("attention on the CPU");
  attention_pool = &ctx->pool;
  if (!cpu_io.empty()) {
    // Attention on the CPU reads pinned KV and talks to the GPU: keep it on the nearest cores.
    const std::vector<int> cpus = cpus_near_gpu(lanes->device(), log);
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

Result<Tensor> OffloadEngine::Impl::step(const compute::TokenBatch& batch, std::span<const int32_t> rows) {
  STRATA_RETURN_IF_ERROR(model->check_batch(batch));
  const int64_t T = batch.size();
  // Split the step by GPU batch: sequences must come in slot order.
  std::vector<SubBatch> subs(static_cast<size_t>(nb));
  std::vector<bool> active(static_cast<size_t>(nb), false);
  bool prefill = false, decode = false;
  int32_t last_slot = -1;
  for (const auto& s : batch.seqs) {
    if (s.slot <= last_slot || s.slot >= slots_in_use)
      return invalid_argument("offload: sequences must come in increasing slot order within [0, " +
                              std::to_string(slots_in_use) + ")");
    last_slot = s.slot;
    if (s.past_len + s.num_tokens > max_len_in_use)
      return invalid_argument("offload: the sequence in slot " + std::to_string(s.slot) + " needs " +
                              std::to_string(s.past_len + s.num_tokens) + " positions; reset() made room for " +
                              std::to_string(max_len_in_use));
    (s.past_len == 0 ? prefill : decode) = true;
    if (s.past_len == 0 && s.num_tokens > prefill_len)
      return invalid_argument("offload: a prompt of " + std::to_string(s.num_tokens) +
                              " tokens is longer than the policy's prompt length " + std::to_string(prefill_len));
    const int64_t b = s.slot / gbs;
    SubBatch& sb = subs[b];
    if (!active[b]) sb.first_row = s.offset;
    active[b] = true;
    sb.batch.add_sequence(static_cast<int32_t>(s.slot - b * gbs), s.past_len,
                          std::span<const int32_t>(batch.tokens).subspan(s.offset, s.num_tokens));
  }
  if (prefill && decode)
    return unsupported("offload: a step mixes prompts and decoding; run them as separate steps");
  if (decode)
    for (const auto& s : batch.seqs)
      if (s.num_tokens != 1) return unsupported("offload: decode steps take one token per sequence");
  // Logit rows, by batch, in order.
  int32_t r_out = 0;
  for (int64_t b = 0, ri = 0; b < nb; ++b) {
    if (!active[b]) continue;
    SubBatch& sb = subs[b];
    sb.logit_begin = r_out;
    const int32_t end = sb.first_row + sb.batch.size();
    while (ri < static_cast<int64_t>(rows.size()) && rows[ri] >= sb.first_row && rows[ri] < end) {
      sb.rows.push_back(rows[ri++] - sb.first_row);
      ++r_out;
    }
  }
  if (r_out != static_cast<int32_t>(rows.size()))
    return invalid_argument("offload: logit rows must be in increasing order within [0, " +
                            std::to_string(T) + ")");

  // The plan of this step.
  auto key = std::make_pair(prefill, active);
  auto it = plans.find(key);
  if (it == plans.end()) {
    StepShape shape = base_shape;
    shape.prefill = prefill;
    shape.batch_active = active;
    it = plans.emplace(key, plan_step(shape)).first;
  }
  const std::vector<Action>& plan = it->second;

  const double t_step = lanes->now_s();
  std::vector<Tensor> x(static_cast<size_t>(nb));
  std::vector<compute::Transformer::AttentionInputs> qkv(static_cast<size_t>(nb));
  std::vector<cuda::Event> ev(plan.size());
  std::vector<int64_t> ticket(plan.size(), -1);
  Tensor logits = model->alloc(static_cast<int64_t>(rows.size()), config.vocab_size);
  const int64_t E = config.num_kv_heads * config.head_dim, Hq = config.num_heads, D = config.head_dim;

  auto lane_of = [](PlanResource r) {
    if (r == PlanResource::kH2d) return cuda::Lane::kH2d;
    return r == PlanResource::kD2h ? cuda::Lane::kD2h : cuda::Lane::kCompute;
  };
  auto host_action = [&](int32_t i) {
    const PlanResource r = resource_of(plan[i].kind);
    return r == PlanResource::kDisk || r == PlanResource::kCpu;
  };
  auto host_worker = [&](int32_t i) -> Worker& {
    return resource_of(plan[i].kind) == PlanResource::kDisk ? *disk_worker : *cpu_worker;
  };
  // GPU actions: wait for deps on other lanes (on the GPU) and on host work (here).
  auto gpu_deps = [&](const Action& a, cuda::Lane lane) -> Status {
    for (int32_t d : a.deps) {
      if (host_action(d)) {
        STRATA_RETURN_IF_ERROR(host_worker(d).wait(ticket[d]));
      } else if (lane_of(resource_of(plan[d].kind)) != lane) {
        lanes->wait(lane, ev[d]);
      }
    }
    return Status::ok();
  };
  // Host actions: the GPU events and the other worker's tasks they need, waited on by the worker.
  struct HostWaits {
    std::vector<cuda::Event> events;
    Worker* other = nullptr;
    int64_t ticket = -1;
  };
  auto host_waits = [&](const Action& a, const Worker& self) {
    HostWaits w;
    for (int32_t d : a.deps) {
      if (!host_action(d)) {
        w.events.push_back(ev[d]);
      } else if (&host_worker(d) != &self) {
        w.other = &host_worker(d);
        w.ticket = std::max(w.ticket, ticket[d]);
      }
    }
    return w;
  };
  auto wait_for = [this](const HostWaits& w) -> Status {
    if (w.other) STRATA_RETURN_IF_ERROR(w.other->wait(w.ticket));
    for (const auto& e : w.events) STRATA_RETURN_IF_ERROR(lanes->host_wait(e));
    return Status::ok();
  };
  auto find_in = [&](int64_t u) {
    const auto* views = &unit_views[u];
    return [views](const std::string& name) -> const Tensor* {
      auto f = views->find(name);
      return f == views->end() ? nullptr : &f->second;
    };
  };

  // Issues every action; the workers may still run tasks that point into this frame, so every
  // way out goes through the drain below.
  auto issue = [&]() -> Status {
    for (size_t i = 0; i < plan.size(); ++i) {
      const Action& a = plan[i];
      const PlanResource res = resource_of(a.kind);
      const cuda::Lane lane = lane_of(res);
      const std::string name = describe(a);
      if (res == PlanResource::kDisk && a.kind == ActionKind::kDiskRead) {
        const WeightUnit& unit = weights->unit(a.unit);
        auto waits = host_waits(a, *disk_worker);
        void* buf = disk_staging[a.staging].raw();
        const storage::IoFile* file = weights->file();
        ticket[i] = disk_worker->submit([this, waits, wait_for, buf, file, &unit, name]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          storage::IoRequest r;
          r.kind = storage::IoOpKind::kRead;
          r.file = file;
          r.offset = unit.disk_offset;
          r.buf = buf;
          r.length = unit.disk_bytes;
          r.what = "streamed weights (" + name + ")";
          STRATA_RETURN_IF_ERROR(storage::run_io(*io, {&r, 1}));
          host_span("disk", name, t0, unit.disk_bytes);
          return Status::ok();
        });
        bytes[static_cast<int>(PlanResource::kDisk)] += unit.disk_bytes;
        continue;
      }
      if (res == PlanResource::kDisk) {  // KV between its file and pinned staging
        const bool write = a.kind == ActionKind::kWriteKv;
        auto rows = kv_rows(subs[a.batch].batch.seqs, write);
        uint64_t n = 0;
        for (const auto& [b0, b1] : kv_row_pages(kv_file->shape(), rows)) n += 2 * (b1 - b0);
        (write ? disk_written : bytes[static_cast<int>(PlanResource::kDisk)]) += n;
        auto waits = host_waits(a, *disk_worker);
        auto* buf = static_cast<std::byte*>(kv_disk_staging[a.host_staging].raw());
        const int64_t region = kv[a.unit * nb + a.batch].disk_region;
        ticket[i] = disk_worker->submit([this, waits, wait_for, buf, region, rows, write, name, n]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          if (write) {
            STRATA_RETURN_IF_ERROR(kv_file->write(region, rows, buf).status());
          } else {
            STRATA_RETURN_IF_ERROR(kv_file->read(region, rows, buf).status());
          }
          host_span(write ? "disk_write" : "disk", name, t0, n);
          return Status::ok();
        });
        continue;
      }
      if (res == PlanResource::kCpu) {
        const SubBatch& sb = subs[a.batch];
        const compute::HostKvView view = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
        CpuAttentionIo& cio = cpu_io[a.batch];
        auto waits = host_waits(a, *cpu_worker);
        const compute::AttentionParams params = model->attention_params(a.unit);
        uint64_t kv_bytes = 0;
        for (const auto& s : sb.batch.seqs)
          kv_bytes += (static_cast<uint64_t>(s.past_len) + s.num_tokens) *
                      (int4_kv ? static_cast<uint64_t>(E) * 9 / 16 : static_cast<uint64_t>(E) * 2) * 2;
        ticket[i] = cpu_worker->submit([this, waits, wait_for, &sb, view, &cio, params, name, Hq, kv_bytes]() -> Status {
          STRATA_RETURN_IF_ERROR(wait_for(waits));
          const double t0 = lanes->now_s();
          compute::host_kv_attention(*attention_pool, view, Hq, cio.q.data<uint16_t>(), cio.k.data<uint16_t>(),
                                     cio.v.data<uint16_t>(), sb.batch.seqs, params, cio.out.data<uint16_t>());
          host_span("cpu", name, t0, kv_bytes);
          return Status::ok();
        });
        bytes[static_cast<int>(PlanResource::kCpu)] += kv_bytes;
        continue;
      }

      STRATA_RETURN_IF_ERROR(gpu_deps(a, lane));
      uint64_t moved = 0;
      switch (a.kind) {
        case ActionKind::kLoadWeights: {
          const WeightUnit& unit = weights->unit(a.unit);
          STRATA_CHECK(a.slot == unit_slot[a.unit], "offload: the plan and the engine disagree on a slot");
          auto* slot = static_cast<std::byte*>(slots[a.slot].raw());
          auto chunk = [&](size_t total, int32_t part) {
            const size_t per = (total / a.parts + 4095) / 4096 * 4096;
            const size_t b0 = std::min(total, per * part), b1 = std::min(total, per * (part + 1));
            return std::make_pair(b0, b1);
          };
          lanes->begin(lane, name, 0);
          auto [c0, c1] = chunk(unit.cpu_bytes, a.part);
          if (c1 > c0) lanes->copy(lane, slot + c0, static_cast<const std::byte*>(unit.cpu_blob.raw()) + c0, c1 - c0);
          auto [d0, d1] = chunk(unit.disk_bytes, a.part);
          if (d1 > d0)
            lanes->copy(lane, slot + unit.cpu_bytes + d0, static_cast<const std::byte*>(disk_staging[a.staging].raw()) + d0,
                        d1 - d0);
          moved = (c1 - c0) + (d1 - d0);
          break;
        }
        case ActionKind::kEmbed: {
          lanes->begin(lane, name);
          STRATA_RETURN_IF_ERROR(embed(subs[a.batch], x[a.batch]));
          if (a.hidden_staging >= 0) {  // kept on the CPU: through the staging buffer
            Tensor staged = hidden_view(a.hidden_staging, subs[a.batch].batch.size());
            lanes->copy_device(staged.raw(), x[a.batch].raw(), staged.bytes());
            x[a.batch] = staged;
          }
          break;
        }
        case ActionKind::kLoadHidden: {
          Tensor staged = hidden_view(a.hidden_staging, subs[a.batch].batch.size());
          lanes->begin(lane, name);
          lanes->copy(lane, staged.raw(), host_hidden[a.batch].raw(), staged.bytes());
          x[a.batch] = staged;
          moved = staged.bytes();
          break;
        }
        case ActionKind::kStoreHidden: {
          const Tensor& staged = x[a.batch];
          STRATA_CHECK(staged.raw() == hidden_staging[a.hidden_staging].raw(),
                       "offload: a batch's hidden states are not in their staging buffer");
          lanes->begin(lane, name);
          lanes->copy(lane, host_hidden[a.batch].raw(), staged.raw(), staged.bytes());
          moved = staged.bytes();
          break;
        }
        case ActionKind::kLayer: {
          lanes->begin(lane, name);
          const SubBatch& sb = subs[a.batch];
          const auto find = find_in(a.unit);
          auto in = model->attention_inputs(a.unit, find, x[a.batch], sb.batch);
          const int64_t Tb = sb.batch.size();
          Tensor ctx_t = model->alloc(Tb, Hq * D);
          Tensor ctx3 = ctx_t.reshape({Tb, Hq, D});
          KvUnit& kvu = kv[a.unit * nb + a.batch];
          compute::LayerKvCache& cache = kvu.tier == Tier::kGpu ? kvu.gpu : kv_staging[a.staging];
          backend->attention(in.q, in.k, in.v, cache, sb.batch.seqs, model->attention_params(a.unit), ctx3);
          if (kvu.tier != Tier::kGpu && int4_kv)
            for (int kvi = 0; kvi < 2; ++kvi) {
              const Tensor& src = kvi == 0 ? cache.k : cache.v;
              STRATA_RETURN_IF_ERROR(cuda::quantise_int4_async(*backend, src.reshape({gbs * prefill_len, E}),
                                                               kv_blob_staging[a.staging][kvi]));
            }
          model->finish_layer(a.unit, find, x[a.batch], ctx_t);
          break;
        }
        case ActionKind::kLoadKv: {
          const SubBatch& sb = subs[a.batch];
          const compute::HostKvView src = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
          const compute::LayerKvCache& dst = kv_staging[a.staging];
          int32_t used_slots = 0, P = 0;  // every position before the new ones
          for (const auto& s : sb.batch.seqs) {
            used_slots = std::max(used_slots, s.slot + 1);
            P = std::max(P, s.past_len);
          }
          lanes->begin(lane, name);
          const size_t row = static_cast<size_t>(E) * 2;
          for (int kvi = 0; kvi < 2 && P > 0; ++kvi) {
            lanes->copy_2d(lane, (kvi == 0 ? dst.k : dst.v).raw(), staging_len * row, kvi == 0 ? src.k : src.v,
                           max_len * row, P * row, used_slots);
            moved += static_cast<uint64_t>(P) * row * used_slots;
          }
          break;
        }
        case ActionKind::kStoreKv: {
          const SubBatch& sb = subs[a.batch];
          const compute::HostKvView host = host_kv(kv[a.unit * nb + a.batch], a.host_staging);
          int32_t used_slots = 0, P = 0;
          for (const auto& s : sb.batch.seqs) {
            used_slots = std::max(used_slots, s.slot + 1);
            P = std::max(P, s.past_len + s.num_tokens);
          }
          lanes->begin(lane, name);
          const size_t row = static_cast<size_t>(E) * 2;
          for (int kvi = 0; kvi < 2; ++kvi) {
            std::byte* dst = kvi == 0 ? host.k : host.v;
            const Tensor& src = kvi == 0 ? kv_staging[a.staging].k : kv_staging[a.staging].v;
            if (!prefill) {
              // Decode with attention on the GPU: the new rows only.
              for (const auto& s : sb.batch.seqs) {
                const size_t at_host = (static_cast<size_t>(s.slot) * max_len + s.past_len) * row;
                const size_t at_gpu = (static_cast<size_t>(s.slot) * staging_len + s.past_len) * row;
                lanes->copy(lane, dst + at_host, static_cast<const std::byte*>(src.raw()) + at_gpu, s.num_tokens * row);
                moved += s.num_tokens * row;
              }
            } else if (!int4_kv) {
              lanes->copy_2d(lane, dst, max_len * row, src.raw(), staging_len * row, P * row, used_slots);
              moved += static_cast<uint64_t>(P) * row * used_slots;
            } else {
              const auto* blob = static_cast<const std::byte*>(kv_blob_staging[a.staging][kvi].raw());
              const size_t staged_rows = static_cast<size_t>(gbs * prefill_len);
              const size_t code_row = static_cast<size_t>(E) / 2, group_row = static_cast<size_t>(E) / 64 * 2;
              const compute::HostKvShape& hs = host.shape;
              // codes, then scales, then mins: each a [rows, bytes-per-row] matrix in both blobs.
              lanes->copy_2d(lane, dst, max_len * code_row, blob, prefill_len * code_row, P * code_row, used_slots);
              lanes->copy_2d(lane, dst + hs.scale_offset(0), max_len * group_row, blob + staged_rows * code_row,
                             prefill_len * group_row, P * group_row, used_slots);
              lanes->copy_2d(lane, dst + hs.min_offset(0), max_len * group_row,
                             blob + staged_rows * (code_row + group_row), prefill_len * group_row, P * group_row,
                             used_slots);
              moved += static_cast<uint64_t>(P) * (code_row + 2 * group_row) * used_slots;
            }
          }
          break;
        }
        case ActionKind::kPreAttention: {
          lanes->begin(lane, name);
          qkv[a.batch] = model->attention_inputs(a.unit, find_in(a.unit), x[a.batch], subs[a.batch].batch);
          break;
        }
        case ActionKind::kQkvToHost: {
          const auto& in = qkv[a.batch];
          CpuAttentionIo& cio = cpu_io[a.batch];
          lanes->begin(lane, name);
          lanes->copy(lane, cio.q.raw(), in.q.raw(), in.q.bytes());
          lanes->copy(lane, cio.k.raw(), in.k.raw(), in.k.bytes());
          lanes->copy(lane, cio.v.raw(), in.v.raw(), in.v.bytes());
          moved = in.q.bytes() + in.k.bytes() + in.v.bytes();
          break;
        }
        case ActionKind::kPostAttention: {
          const SubBatch& sb = subs[a.batch];
          const int64_t Tb = sb.batch.size();
          lanes->begin(lane, name);
          Tensor ctx_t = model->alloc(Tb, Hq * D);
          lanes->copy_device(ctx_t.raw(), cpu_io[a.batch].out.raw(), ctx_t.bytes());
          model->finish_layer(a.unit, find_in(a.unit), x[a.batch], ctx_t);
          bytes[static_cast<int>(PlanResource::kH2d)] += ctx_t.bytes();
          break;
        }
        case ActionKind::kHead: {
          const SubBatch& sb = subs[a.batch];
          lanes->begin(lane, name);
          if (!sb.rows.empty()) {
            Tensor lb = model->head(find_in(L), x[a.batch], sb.rows);
            lanes->copy_device(static_cast<std::byte*>(logits.raw()) + static_cast<size_t>(sb.logit_begin) * lb.bytes() / sb.rows.size(),
                               lb.raw(), lb.bytes());
          }
          break;
        }
        default:
          STRATA_CHECK(false, "offload: unexpected action " + name);
      }
      lanes->end(lane);
      ev[i] = lanes->record(lane);
      bytes[static_cast<int>(res)] += moved;
      // Device memory peaks inside a prompt step's layers (its activations): sample after each.
      if (prefill && a.kind == ActionKind::kLayer) lanes->sample_memory();
    }
    return Status::ok();
  };
  const Status issued = issue();
  const Status cpu_done = cpu_worker->drain();
  const Status disk_done = disk_worker->drain();
  const Status gpu_done = lanes->synchronize();
  for (const Status* st : {&issued, &disk_done, &cpu_done, &gpu_done})
    if (!st->is_ok()) return st->with_context("offload: step " + std::to_string(report.prefill_steps + report.decode_steps));
  lanes->sample_memory();
  collect_gpu_spans();
  Tensor host = rows.empty() ? Tensor::host(DType::kF32, {0, config.vocab_size}) : backend->to_host_f32(logits);
  // The prompt-sized activations the backend keeps cached would stay reserved through decoding.
  if (prefill) {
    logits = Tensor();
    x.clear();
    qkv.clear();
    cuda::release_cached_memory(*backend);
  }
  const double took = lanes->now_s() - t_step;
  (prefill ? report.prefill_s : report.decode_s) += took;
  (prefill ? report.prefill_steps : report.decode_steps) += 1;
  (prefill ? report.prefill_tokens : report.decode_tokens) += T;
  return host;
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
  r.resources.push_back({"disk_write", busy[5].busy_s, m.disk_written});
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
  m.disk_written = 0;
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
