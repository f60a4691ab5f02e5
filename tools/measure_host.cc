#include "measure_host.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <thread>

#include "common/check.h"
#include "common/dtype.h"
#include "common/tensor.h"
#include "compute/host_kv.h"

namespace strata::tools {

double measure_dram_gbps(uint64_t bytes, int threads) {
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  std::atomic<uint64_t> sink{0};
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t begin = n * t / threads, end = n * (t + 1) / threads;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          s0 += buf[i];
          s1 += buf[i + 1];
          s2 += buf[i + 2];
          s3 += buf[i + 3];
        }
        for (; i < end; ++i) s0 += buf[i];
        sink += s0 + s1 + s2 + s3;
      });
    }
    for (auto& th : pool) th.join();
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / seconds_since(t0) / 1e9);
  }
  return best;
}

Result<double> measure_cpu_gemm_tflops(compute::Backend& backend, DType weight_dtype) {
  const int64_t T = 512, K = 4096, N = 4096;
  Tensor w = Tensor::host(weight_dtype, {N, K});
  STRATA_ASSIGN_OR_RETURN(Tensor wd, backend.upload(w, compute::WeightKind::kLinear));
  STRATA_ASSIGN_OR_RETURN(Tensor x, backend.allocate(DType::kF32, {T, K}));
  STRATA_ASSIGN_OR_RETURN(Tensor y, backend.allocate(DType::kF32, {T, N}));
  backend.linear(x, wd, nullptr, y);  // warm-up
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    backend.linear(x, wd, nullptr, y);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * T * K * N / best / 1e12;
}

namespace {

// Host memory that KV cache views are cut from, filled with small fp16 values: read as fp16 KV
// they keep the arithmetic finite and normal; read as int4 KV every byte is two valid codes and
// every scale and minimum a modest fp16 value. The kernel's speed does not depend on the values.
struct KvArena {
  std::unique_ptr<uint16_t[]> words;
  size_t bytes = 0;
};

Result<KvArena> make_arena(size_t bytes) {
  KvArena a;
  a.bytes = bytes / 4096 * 4096;
  a.words.reset(new (std::nothrow) uint16_t[a.bytes / 2]);
  if (!a.words)
    return out_of_memory("CPU attention test: cannot allocate " +
                         short_bytes(static_cast<double>(bytes)));
  const size_t n = a.bytes / 2;
  for (size_t i = 0; i < std::min<size_t>(n, 97); ++i)
    a.words[i] = f32_to_f16(static_cast<float>(i) / 1000.0f);
  for (size_t filled = 97; filled < n; filled *= 2)  // the pattern doubled until the arena is full
    std::memcpy(&a.words[filled], &a.words[0], std::min(filled, n - filled) * 2);
  return a;
}

// As many distinct caches of `shape` as the arena holds (at least one; k and v of each next to
// each other): calls that take them in turn find their KV out of the CPU's caches, as the engine's
// calls do (each layer and GPU batch has its own).
std::vector<compute::HostKvView> views_of(const KvArena& arena, const compute::HostKvShape& shape) {
  const size_t each = (shape.bytes_each() + 4095) / 4096 * 4096;
  STRATA_CHECK(2 * each <= arena.bytes, "CPU attention test: the arena is smaller than one cache");
  std::vector<compute::HostKvView> views;
  auto* base = reinterpret_cast<std::byte*>(arena.words.get());
  for (size_t off = 0; off + 2 * each <= arena.bytes; off += 2 * each)
    views.push_back({shape, base + off, base + off + each});
  return views;
}

// Seconds of one host_kv_attention call: `seqs` sequences (slots 0..seqs-1) each adding one token
// at position len - 1 and attending to all `len` positions; the calls take the caches in turn; the
// median of `reps` after a warm-up call.
double time_attention(ThreadPool& pool, const std::vector<compute::HostKvView>& caches,
                      int64_t heads, int64_t seqs, int64_t len, int reps) {
  const compute::HostKvShape& shape = caches.front().shape;
  const int64_t d = shape.head_dim, qd = heads * d, e = shape.row_elems();
  std::vector<uint16_t> q(static_cast<size_t>(seqs * qd), f32_to_f16(0.05f));
  std::vector<uint16_t> nk(static_cast<size_t>(seqs * e), f32_to_f16(0.02f));
  std::vector<uint16_t> nv = nk, out(q.size());
  std::vector<compute::SeqSpan> spans;
  for (int32_t i = 0; i < seqs; ++i) spans.push_back({i, static_cast<int32_t>(len - 1), 1, i});
  compute::AttentionParams params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<double> times;
  for (int r = 0; r <= reps; ++r) {
    const compute::HostKvView& kv = caches[static_cast<size_t>(r) % caches.size()];
    const auto t0 = Clock::now();
    compute::host_kv_attention(pool, kv, heads, q.data(), nk.data(), nv.data(), spans, params,
                               out.data());
    if (r > 0) times.push_back(seconds_since(t0));  // the first call warms the pool up
  }
  return median(times);
}

}  // namespace

Result<CpuAttentionRates> measure_cpu_attention_rates(ThreadPool& pool, uint64_t arena_bytes) {
  const int64_t seqs = 32, len = 512, d = 128;
  const compute::HostKvShape gqa{seqs, len, 8, d, false}, q4{seqs, len, 32, d, true};
  STRATA_ASSIGN_OR_RETURN(KvArena arena,
                          make_arena(std::max<uint64_t>(arena_bytes, 4 * q4.bytes_each() + 8192)));
  CpuAttentionRates f;
  f.gflops = 4.0 * seqs * 64 * d * len /
             time_attention(pool, views_of(arena, gqa), 64, seqs, len, 5) / 1e9;
  f.int4_gelems =
      2.0 * seqs * len * 32 * d / time_attention(pool, views_of(arena, q4), 32, seqs, len, 5) / 1e9;
  return f;
}

CpuAttentionGrid cpu_attention_grid(bool quick) {
  CpuAttentionGrid g;
  if (quick) return g;
  g.sequences = {1, 2, 4, 8, 16, 32, 64};
  g.contexts = {128, 256, 512, 1024, 2048};
  g.repetitions = 9;
  g.arena_bytes = uint64_t{1} << 30;
  return g;
}

namespace {

// Times every grid point over one cache layout and fits it; appends the fit's line to `text`.
Result<planner::CpuAttentionCost> measure_layout(ThreadPool& pool, const CpuAttentionGrid& g,
                                                 bool int4, const ProgressFn& progress,
                                                 std::vector<planner::TimedAttention>* samples,
                                                 double* rms, std::string* text) {
  const int64_t max_seqs = *std::max_element(g.sequences.begin(), g.sequences.end());
  const int64_t max_len = *std::max_element(g.contexts.begin(), g.contexts.end());
  const compute::HostKvShape largest{max_seqs, max_len, g.kv_heads, g.head_dim, int4};
  STRATA_ASSIGN_OR_RETURN(KvArena arena, make_arena(std::max<uint64_t>(
                                             g.arena_bytes, 2 * largest.bytes_each() + 8192)));
  const uint64_t e = static_cast<uint64_t>(g.kv_heads * g.head_dim);
  const uint64_t per_position = (int4 ? e * 9 / 16 : e * 2) * 2;  // keys and values, as stored
  const std::string what =
      std::string("CPU attention per call, ") + (int4 ? "int4" : "fp16") + " KV";
  const int total = static_cast<int>(g.sequences.size() * g.contexts.size());
  int done = 0;
  report_progress(progress, what, 0, total);
  for (int64_t seqs : g.sequences) {
    for (int64_t len : g.contexts) {
      const auto caches = views_of(arena, {seqs, len, g.kv_heads, g.head_dim, int4});
      const double s = time_attention(pool, caches, g.heads, seqs, len, g.repetitions);
      samples->push_back(
          {static_cast<double>(seqs), static_cast<double>(seqs * len * per_position), s});
      report_progress(progress, what, ++done, total);
    }
  }
  const std::string field = int4 ? "cpu.attention_int4" : "cpu.attention_fp16";
  STRATA_ASSIGN_OR_RETURN(planner::CpuAttentionCost c, planner::fit_cpu_attention(*samples, field));
  *rms = attention_fit_rms(c, *samples);
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "%s: %.1f us + %.2f us per sequence + KV bytes / %.1f GB/s, rms relative error %s over",
      field.c_str(), c.fixed_us, c.per_sequence_us, c.gbps, percent(*rms).c_str());
  *text += buf;
  for (size_t i = 0; i < samples->size(); ++i) {
    const auto& t = (*samples)[i];
    std::snprintf(buf, sizeof buf, "%s %.0fx%.0f %s", i ? "," : "", t.sequences,
                  t.kv_bytes / t.sequences / static_cast<double>(per_position),
                  short_seconds(t.seconds).c_str());
    *text += buf;
  }
  *text += " (sequences x positions)";
  return c;
}

}  // namespace

Result<CpuAttentionCalls> measure_cpu_attention_calls(ThreadPool& pool, const CpuAttentionGrid& g,
                                                      const ProgressFn& progress) {
  if (g.sequences.empty() || g.contexts.empty() || g.repetitions < 1)
    return invalid_argument(
        "CPU attention grid: needs sequences, contexts and at least one repetition");
  for (int64_t v : g.sequences)
    if (v < 1) return invalid_argument("CPU attention grid: sequences per call must be positive");
  for (int64_t v : g.contexts)
    if (v < 1) return invalid_argument("CPU attention grid: context lengths must be positive");
  if (g.kv_heads < 1 || g.heads % g.kv_heads != 0 || g.head_dim % 64 != 0)
    return invalid_argument(
        "CPU attention grid: query heads must be a multiple of kv heads and head_dim of 64");
  CpuAttentionCalls out;
  char head[160];
  std::snprintf(
      head, sizeof head,
      "CPU attention per call (%s kernel, %d threads, %lld query / %lld kv heads, head_dim %lld): ",
      compute::host_kv_kernel(), pool.size(), static_cast<long long>(g.heads),
      static_cast<long long>(g.kv_heads), static_cast<long long>(g.head_dim));
  out.text = head;
  STRATA_ASSIGN_OR_RETURN(out.fp16, measure_layout(pool, g, false, progress, &out.fp16_samples,
                                                   &out.fp16_rms, &out.text));
  out.text += "; ";
  STRATA_ASSIGN_OR_RETURN(out.int4, measure_layout(pool, g, true, progress, &out.int4_samples,
                                                   &out.int4_rms, &out.text));
  return out;
}

}  // namespace strata::tools
