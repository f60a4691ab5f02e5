#include "machine_profile.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "bench/drivers/io_bench.h"
#include "common/thread_pool.h"
#include "compute/host_kv.h"
#include "cuda/cuda_backend.h"
#include "cuda/device.h"
#include "cuda/profile.h"
#include "measure_disk.h"
#include "measure_gpu.h"
#include "measure_host.h"
#include "offload/engine_profile.h"
#include "offload/near_gpu.h"
#include "profile_cache.h"

namespace strata::tools {

namespace {

// Numbers the stages for the progress line: "[3/9] CPU attention per call, fp16 KV".
class Stages {
 public:
  Stages(ProgressFn fn, int total) : fn_(std::move(fn)), total_(total) {}
  // The progress callback of the next stage.
  ProgressFn next() {
    char prefix_text[32];
    std::snprintf(prefix_text, sizeof prefix_text, "[%d/%d] ", ++stage_, total_);
    const std::string prefix = prefix_text;
    ProgressFn fn = fn_;
    return [fn, prefix](const std::string& what, int done, int total) {
      if (fn) fn(prefix + what, done, total);
    };
  }

 private:
  ProgressFn fn_;
  int total_;
  int stage_ = 0;
};

// Runs `f` as a stage of one point.
template <typename F>
auto one_point(Stages& stages, const std::string& what, F&& f) {
  const ProgressFn p = stages.next();
  report_progress(p, what, 0, 1);
  auto r = f();
  report_progress(p, what, 1, 1);
  return r;
}

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b, c);
  return buf;
}

// DRAM, CPU GEMM and the CPU attention kernel: 4 stages.
Status measure_host(const MeasureOptions& o, ThreadPool& pool, ThreadPool& attention_pool,
                    planner::HardwareProfile& p, std::vector<std::string>& source, Stages& stages) {
  const uint64_t dram_test =
      o.dram_test_bytes ? o.dram_test_bytes : (o.quick ? 256ull : 1024ull) << 20;
  p.cpu.dram_gbps = one_point(stages, "DRAM read bandwidth",
                              [&] { return measure_dram_gbps(dram_test, pool.size()); });
  source.push_back(fmt("DRAM read %.1f GB/s", p.cpu.dram_gbps) + " (" +
                   std::to_string(pool.size()) + " threads, " +
                   short_bytes(static_cast<double>(dram_test)) + " buffer, best of 3)");
  auto backend = compute::make_cpu_backend(pool);
  const auto gemm = one_point(stages, "CPU GEMM", [&]() -> Result<std::pair<double, double>> {
    STRATA_ASSIGN_OR_RETURN(double f32, measure_cpu_gemm_tflops(*backend, DType::kF32));
    STRATA_ASSIGN_OR_RETURN(double bf16, measure_cpu_gemm_tflops(*backend, DType::kBF16));
    return std::make_pair(f32, bf16);
  });
  if (!gemm.is_ok()) return gemm.status();
  p.cpu.gemm_tflops = std::max(gemm->first, gemm->second);
  source.push_back(
      fmt("CPU GEMM 512x4096x4096 through the CPU backend: fp32 %.3f, bf16 %.3f TFLOP/s",
          gemm->first, gemm->second));
  const CpuAttentionGrid grid = cpu_attention_grid(o.quick);
  STRATA_ASSIGN_OR_RETURN(CpuAttentionRates rates,
                          one_point(stages, "CPU attention kernel rates", [&] {
                            return measure_cpu_attention_rates(attention_pool, grid.arena_bytes);
                          }));
  p.cpu.attention_gflops = rates.gflops;
  p.cpu.dequant_gelems = rates.int4_gelems;
  source.push_back(
      std::string("CPU attention kernel (") + compute::host_kv_kernel() +
      ", 32 x 512 positions): " +
      fmt("%.1f GFLOP/s fp16 with 64 query / 8 kv heads, int4 unpacked at %.1f G elements/s",
          rates.gflops, rates.int4_gelems));
  STRATA_ASSIGN_OR_RETURN(CpuAttentionCalls calls,
                          measure_cpu_attention_calls(attention_pool, grid, stages.next()));
  p.cpu.attention_fp16 = calls.fp16;
  p.cpu.attention_int4 = calls.int4;
  source.push_back(calls.text);
  return Status::ok();
}

// The offload directory's capacity, and its requests unless skip_disk: 1 stage.
Status measure_disk(const MeasureOptions& o, planner::HardwareProfile& p,
                    std::vector<std::string>& source, Stages& stages, Logger& log) {
  struct statvfs vfs {};
  if (statvfs(o.offload_dir.c_str(), &vfs) != 0)
    return io_error(
        "cannot stat the offload directory " + o.offload_dir.string() + ": " + std::strerror(errno),
        errno);
  p.disk.name = o.offload_dir.string() + " (" + bench::filesystem_type(o.offload_dir) + ")";
  p.disk.capacity_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (o.skip_disk) {
    source.push_back("disk " + o.offload_dir.string() + ": not measured (--skip-disk)");
    return Status::ok();
  }
  const uint64_t test = o.disk_test_bytes ? o.disk_test_bytes : (o.quick ? 256ull : 1024ull) << 20;
  STRATA_ASSIGN_OR_RETURN(
      DiskRequests d, measure_disk_requests(disk_request_options(o.quick, o.offload_dir, test), log,
                                            stages.next()));
  p.disk.read_gbps = d.read.rate / 1e9;
  p.disk.write_gbps = d.write.rate / 1e9;
  p.disk.read_latency_us = d.read.fixed_s * 1e6;
  p.disk.write_latency_us = d.write.fixed_s * 1e6;
  source.push_back(d.text);
  return Status::ok();
}

// Link and GEMM rates, copies, linear layers and the engine's fixed costs: 4 stages.
Status measure_gpu(const MeasureOptions& o, ThreadPool& pool, planner::HardwareProfile& p,
                   std::vector<std::string>& source, Stages& stages, Logger& log) {
  const uint64_t copy_bytes = (o.quick ? 64ull : 256ull) << 20;
  auto rates = one_point(stages, "GPU link, GEMM and HBM rates",
                         [&] { return cuda::measure_gpu_profile(o.device, copy_bytes); });
  if (!rates.is_ok()) return rates.status().with_context("GPU rates");
  p.gpu.name = rates->name;
  p.gpu.memory_bytes = rates->memory_bytes;
  p.gpu.gemm_prefill_tflops = rates->gemm_prefill_tflops;
  p.gpu.gemm_decode_tflops = rates->gemm_decode_tflops;
  p.gpu.hbm_gbps = rates->hbm_gbps;
  p.links.h2d_gbps = rates->h2d_gbps;
  p.links.d2h_gbps = rates->d2h_gbps;
  p.links.duplex_gbps = rates->duplex_gbps;
  source.push_back("GPU " + rates->name + ": " +
                   fmt("pinned h2d %.1f, d2h %.1f, both at once %.1f GB/s each", rates->h2d_gbps,
                       rates->d2h_gbps, rates->duplex_gbps) +
                   " (" + short_bytes(static_cast<double>(copy_bytes)) + " copies); " +
                   fmt("fp16 GEMM 4096x8192x8192 %.0f, 32x8192x8192 %.0f TFLOP/s; ",
                       rates->gemm_prefill_tflops, rates->gemm_decode_tflops) +
                   fmt("HBM copy %.0f GB/s", rates->hbm_gbps));

  cuda::CudaBackendOptions bo;
  bo.device = o.device;
  STRATA_ASSIGN_OR_RETURN(auto backend, cuda::make_cuda_backend(bo));
  STRATA_ASSIGN_OR_RETURN(CopyLatencies copies,
                          measure_copy_latencies(*backend, copy_options(o.quick), stages.next()));
  p.links.h2d_latency_us = copies.h2d.fixed_s * 1e6;
  p.links.d2h_latency_us = copies.d2h.fixed_s * 1e6;
  source.push_back(copies.text);
  STRATA_ASSIGN_OR_RETURN(LinearCurves linear,
                          measure_linear_curves(*backend, linear_options(o.quick), stages.next()));
  p.gpu.linear_fp16 = linear.fp16;
  p.gpu.linear_int4 = linear.int4;
  source.push_back(linear.text);
  cuda::release_cached_memory(*backend);
  STRATA_ASSIGN_OR_RETURN(offload::EngineFixedCosts fixed,
                          offload::measure_engine_fixed_costs(
                              *backend, pool, offload::engine_fixed_options(o.quick, o.offload_dir),
                              log, stages.next()));
  p.gpu.fixed = fixed.fixed;
  source.push_back(fixed.text);
  // A CPU attention call costs the engine at least what it costs there with next to no KV (the
  // hand-off to the worker and the pool's wake-up come on top of the kernel's own fixed cost).
  for (auto [name, c] : {std::pair{"fp16", &p.cpu.attention_fp16}, std::pair{"int4", &p.cpu.attention_int4}})
    if (c->present() && fixed.cpu_attention_call_us > c->fixed_us) {
      source.push_back(std::string("cpu.attention_") + name +
                       fmt(".fixed_us %.1f -> %.1f (the engine's cost per call)", c->fixed_us,
                           fixed.cpu_attention_call_us));
      c->fixed_us = fixed.cpu_attention_call_us;
    }
  return Status::ok();
}

std::string host_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

// The pool CPU attention runs on in the engine: the CPUs nearest the GPU on a machine of several
// NUMA nodes, else every thread of `pool`. Null: use `pool`.
std::unique_ptr<ThreadPool> attention_pool_near(int device, bool gpu, ThreadPool& pool,
                                                Logger& log) {
  if (!gpu) return nullptr;
  const offload::GpuNeighbourhood near = offload::near_gpu(device, log);
  if (near.cpus.empty()) return nullptr;
  auto near_pool =
      std::make_unique<ThreadPool>(std::min<int>(pool.size(), static_cast<int>(near.cpus.size())));
  if (!near_pool->bind_workers(near.cpus).is_ok()) return nullptr;
  return near_pool;
}

}  // namespace

bool gpu_measured(const planner::HardwareProfile& p) {
  return p.gpu.gemm_prefill_tflops > 0 && p.links.h2d_gbps > 0;
}
bool disk_measured(const planner::HardwareProfile& p) {
  return p.disk.read_gbps > 0 && p.disk.write_gbps > 0;
}

Result<planner::HardwareProfile> measure_machine(const MeasureOptions& o, Logger& log) {
  const cuda::DeviceQuery devices = cuda::query_devices();
  const bool gpu =
      !o.skip_gpu && o.device >= 0 && o.device < static_cast<int>(devices.devices.size());
  Stages stages(o.progress, 4 + (o.skip_disk ? 0 : 1) + (gpu ? 4 : 0));
  planner::HardwareProfile p;
  const std::string host = host_name();
  p.name = o.name.empty() ? host : o.name;
  p.description = "measured by strata profile on " + host;
  STRATA_ASSIGN_OR_RETURN(p.machine, machine_key(o.offload_dir, o.device));
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p.cpu.name = p.machine.cpu_model;
  p.cpu.cores = cores;
  p.cpu.dram_bytes =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::vector<std::string> source = {"strata profile (" + std::string(o.quick ? "quick" : "full") +
                                     " mode) on " + host + ", " + utc_now()};

  ThreadPool pool(o.threads > 0 ? o.threads : cores);
  const auto near = attention_pool_near(o.device, gpu, pool, log);
  STRATA_RETURN_IF_ERROR(measure_host(o, pool, near ? *near : pool, p, source, stages));
  STRATA_RETURN_IF_ERROR(measure_disk(o, p, source, stages, log));
  if (gpu) {
    STRATA_RETURN_IF_ERROR(measure_gpu(o, pool, p, source, stages, log));
  } else {
    source.push_back(std::string("no GPU figures: ") +
                     (o.skip_gpu             ? "--skip-gpu"
                      : devices.note.empty() ? "no CUDA device " + std::to_string(o.device)
                                             : devices.note));
  }
  for (size_t i = 0; i < source.size(); ++i) p.source += (i ? "\n" : "") + source[i];
  return p;
}

}  // namespace strata::tools
