// strata profile: measures this machine and writes a hardware profile for `strata plan`: CPU GEMM
// and decode attention through the CPU backend, DRAM read bandwidth with every core, disk read and
// write with O_DIRECT through strata's I/O backends (bench/drivers/io_bench.h), capacities, and the
// GPU's links, GEMM rates and HBM bandwidth when a GPU is present (cuda/profile.h). --topology
// prints the NUMA/PCIe topology hwloc sees.
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/drivers/io_bench.h"
#include "commands.h"
#include "common/dtype.h"
#include "common/log.h"
#include "common/thread_pool.h"
#include "common/units.h"
#include "compute/backend.h"
#include "compute/host_kv.h"
#include "cuda/device.h"
#include "cuda/profile.h"
#include "planner/hardware.h"
#include "storage/topology.h"

namespace strata::tools {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct ProfileArgs {
  std::string output = "hardware.json", dir = ".", name, assume_gpu;
  std::string disk_bytes = "1GiB", dram_bytes = "1GiB";
  bool topology = false, skip_disk = false;
};

// DRAM read bandwidth: every thread sums its own slice of a buffer much larger than the caches;
// the best of three passes, in GB/s.
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

// CPU GEMM through the CPU backend's linear(): y[512, 4096] = x · w^T, in TFLOP/s, for F32 and
// BF16 weights; the faster one is what the CPU offers.
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

// Decode attention on the CPU as the offloading engine runs it (compute/host_kv.h), one new token
// for each of 32 sequences of 512 positions, head_dim 128, best of 5 calls:
//  - fp16 KV with grouped queries (64 query heads over 8 kv heads, as Llama-2-70B): each KV byte
//    carries 8 queries' work, so this measures the kernel's arithmetic: GFLOP/s, 4 FLOPs per query
//    element per position (scores and the weighted sum);
//  - int4-g64 KV with 32 heads of their own: the rate the kernel unpacks KV elements, in billions
//    per second (the int4 path is bound by unpacking, not by DRAM).
struct CpuAttentionFigures {
  double gflops = 0;
  double int4_gelems = 0;
};

CpuAttentionFigures measure_cpu_attention(ThreadPool& pool) {
  const int64_t seqs = 32, len = 512, d = 128;
  auto time_calls = [&](const compute::HostKvView& kv, int64_t heads) {
    const int64_t qd = heads * d, e = kv.shape.row_elems();
    std::vector<uint16_t> q(static_cast<size_t>(seqs * qd), f32_to_f16(0.05f));
    std::vector<uint16_t> nk(static_cast<size_t>(seqs * e), f32_to_f16(0.02f));
    std::vector<uint16_t> nv = nk, out(q.size());
    std::vector<compute::SeqSpan> spans;
    for (int32_t i = 0; i < seqs; ++i) spans.push_back({i, static_cast<int32_t>(len - 1), 1, i});
    compute::AttentionParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(d));
    double best = 1e30;
    for (int r = 0; r < 6; ++r) {
      const auto t0 = Clock::now();
      compute::host_kv_attention(pool, kv, heads, q.data(), nk.data(), nv.data(), spans, params, out.data());
      if (r > 0) best = std::min(best, seconds_since(t0));  // the first call warms the pool
    }
    return best;
  };
  // Keys and values of small random values (the timings do not depend on them).
  auto make = [&](int64_t kv_heads, bool int4, std::vector<uint8_t>& k, std::vector<uint8_t>& v) {
    compute::HostKvView view;
    view.shape = {seqs, len, kv_heads, d, int4};
    k.resize(view.shape.bytes_each());
    v.resize(view.shape.bytes_each());
    uint32_t x = 12345;
    for (auto* buf : {&k, &v})
      for (auto& byte : *buf) byte = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
    if (int4) {
      // Scales and mins of modest fp16 values (random bytes there could be infinities).
      const int64_t rows = seqs * len, groups = kv_heads * d / 64;
      for (auto* buf : {&k, &v}) {
        auto* scale = reinterpret_cast<uint16_t*>(buf->data() + view.shape.scale_offset(0));
        auto* min = reinterpret_cast<uint16_t*>(buf->data() + view.shape.min_offset(0));
        for (int64_t i = 0; i < rows * groups; ++i) {
          scale[i] = f32_to_f16(0.01f);
          min[i] = f32_to_f16(-0.08f);
        }
      }
    } else {
      for (auto* buf : {&k, &v}) {
        auto* h = reinterpret_cast<uint16_t*>(buf->data());
        for (size_t i = 0; i < buf->size() / 2; ++i) h[i] = f32_to_f16(static_cast<float>(h[i] % 97) / 1000.0f);
      }
    }
    view.k = reinterpret_cast<std::byte*>(k.data());
    view.v = reinterpret_cast<std::byte*>(v.data());
    return view;
  };
  CpuAttentionFigures f;
  std::vector<uint8_t> k, v;
  const compute::HostKvView gqa = make(8, false, k, v);
  f.gflops = 4.0 * seqs * 64 * d * len / time_calls(gqa, 64) / 1e9;
  const compute::HostKvView q4 = make(32, true, k, v);
  f.int4_gelems = 2.0 * seqs * len * 32 * d / time_calls(q4, 32) / 1e9;
  return f;
}

struct DiskFigures {
  double read_gbps = 0, write_gbps = 0;
  std::string how;
};

// O_DIRECT reads and writes of 4 MiB blocks at queue depth 16 through strata's I/O backends.
Result<DiskFigures> measure_disk(const std::string& dir, uint64_t bytes, Logger& log) {
  bench::IoBenchOptions o;
  o.dir = dir;
  o.file_bytes = bytes;
  o.depths = {16};
  o.block_sizes = {4 << 20};
  o.fallback_depths = {16};
  o.repetitions = 2;
  o.max_seconds_per_rep = 3.0;
  STRATA_ASSIGN_OR_RETURN(auto results, bench::run_io_bench(o, log));
  DiskFigures d;
  for (const auto& r : results) {
    if (r.op == "write") d.write_gbps = std::max(d.write_gbps, r.max);
    if (r.op == "read" && r.max > d.read_gbps && r.backend != "pread") {
      d.read_gbps = r.max;
      d.how = r.backend + ", queue depth " + std::to_string(r.depth) + ", 4 MiB blocks" +
              (r.direct ? ", O_DIRECT" : ", buffered (the filesystem refused O_DIRECT)");
    }
  }
  if (d.read_gbps == 0 || d.write_gbps == 0)
    return io_error("the disk benchmark in " + dir + " produced no read or write figure", 0);
  return d;
}

Status run_profile(const ProfileArgs& a) {
  Logger log(LogLevel::kWarn);
  cuda::DeviceQuery devices = cuda::query_devices();
  if (a.topology) {
    const std::string bus = devices.devices.empty() ? "" : devices.devices[0].pci_bus_id;
    STRATA_ASSIGN_OR_RETURN(storage::Topology topo, storage::query_topology(bus));
    std::printf("%s\n", storage::format_topology(topo).c_str());
  }

  planner::HardwareProfile p;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  p.name = a.name.empty() ? std::string(host) : a.name;
  p.description = "measured by strata profile on " + std::string(host);
  std::string how = "strata profile: ";
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p.cpu.name = "host CPU";
  p.cpu.cores = cores;
  p.cpu.dram_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

  STRATA_ASSIGN_OR_RETURN(uint64_t dram_test, parse_bytes(a.dram_bytes));
  std::fprintf(stderr, "measuring DRAM read bandwidth (%d threads)...\n", cores);
  p.cpu.dram_gbps = measure_dram_gbps(dram_test, cores);
  std::fprintf(stderr, "measuring CPU GEMM and attention through the CPU backend...\n");
  ThreadPool pool(cores);
  auto backend = compute::make_cpu_backend(pool);
  STRATA_ASSIGN_OR_RETURN(double f32, measure_cpu_gemm_tflops(*backend, DType::kF32));
  STRATA_ASSIGN_OR_RETURN(double bf16, measure_cpu_gemm_tflops(*backend, DType::kBF16));
  p.cpu.gemm_tflops = std::max(f32, bf16);
  std::fprintf(stderr, "measuring decode attention over host KV (the offloading engine's kernel, %s)...\n",
               compute::host_kv_kernel());
  const CpuAttentionFigures att = measure_cpu_attention(pool);
  p.cpu.attention_gflops = att.gflops;
  p.cpu.dequant_gelems = att.int4_gelems;
  char buf[640];
  std::snprintf(buf, sizeof buf,
                "DRAM read %.1f GB/s (%d threads, %s buffer); CPU GEMM 512x4096x4096 fp32 %.3f, bf16 "
                "%.3f TFLOP/s; CPU decode attention over host KV (%s kernel, 32 x 512 positions): "
                "%.1f GFLOP/s fp16 with 64 query / 8 kv heads, int4 unpacked at %.1f G elements/s; ",
                p.cpu.dram_gbps, cores, a.dram_bytes.c_str(), f32, bf16, compute::host_kv_kernel(),
                att.gflops, att.int4_gelems);
  how += buf;

  struct statvfs vfs{};
  if (statvfs(a.dir.c_str(), &vfs) != 0)
    return io_error("cannot stat the offload directory " + a.dir + ": " + std::strerror(errno), errno);
  p.disk.name = a.dir + " (" + bench::filesystem_type(a.dir) + ")";
  p.disk.capacity_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (!a.skip_disk) {
    STRATA_ASSIGN_OR_RETURN(uint64_t disk_test, parse_bytes(a.disk_bytes));
    std::fprintf(stderr, "measuring disk reads and writes in %s (%s test file)...\n", a.dir.c_str(),
                 a.disk_bytes.c_str());
    STRATA_ASSIGN_OR_RETURN(DiskFigures d, measure_disk(a.dir, disk_test, log));
    p.disk.read_gbps = d.read_gbps;
    p.disk.write_gbps = d.write_gbps;
    std::snprintf(buf, sizeof buf, "disk %s: read %.2f GB/s (%s), write %.2f GB/s, %s free; ", a.dir.c_str(),
                  d.read_gbps, d.how.c_str(), d.write_gbps, format_bytes(p.disk.capacity_bytes).c_str());
    how += buf;
  }

  auto gpu = cuda::measure_gpu_profile(0, 256ull << 20);
  bool have_gpu = gpu.is_ok();
  if (have_gpu) {
    std::fprintf(stderr, "measured the GPU: %s\n", gpu->name.c_str());
    p.gpu = {gpu->name, gpu->memory_bytes, gpu->gemm_prefill_tflops, gpu->gemm_decode_tflops, gpu->hbm_gbps, 0};
    p.links = {gpu->h2d_gbps, gpu->d2h_gbps, gpu->duplex_gbps};
    std::snprintf(buf, sizeof buf,
                  "GPU %s: pinned h2d %.1f, d2h %.1f, both at once %.1f GB/s each (256 MiB copies); "
                  "fp16 GEMM 4096x8192x8192 %.0f, 32x8192x8192 %.0f TFLOP/s; HBM copy %.0f GB/s.",
                  gpu->name.c_str(), gpu->h2d_gbps, gpu->d2h_gbps, gpu->duplex_gbps, gpu->gemm_prefill_tflops,
                  gpu->gemm_decode_tflops, gpu->hbm_gbps);
    how += buf;
  } else if (!a.assume_gpu.empty()) {
    STRATA_ASSIGN_OR_RETURN(planner::HardwareProfile assumed, planner::catalogue_hardware(a.assume_gpu));
    p.gpu = assumed.gpu;
    p.links = assumed.links;
    have_gpu = true;
    how += "no GPU here (" + gpu.status().message() + "): GPU and PCIe figures copied from the catalogue entry " +
           assumed.name + ".";
  } else {
    how += "no GPU figures (" + gpu.status().message() + ").";
  }
  p.source = how;

  nlohmann::json j = planner::hardware_profile_to_json(p);
  if (!have_gpu) {
    j.erase("gpu");
    j.erase("links");
  }
  if (a.skip_disk) {
    j["disk"].erase("read_gbps");
    j["disk"].erase("write_gbps");
  }
  std::printf("%s\n", j.dump(2).c_str());
  std::ofstream out(a.output);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return io_error("cannot write " + a.output, errno);
  std::fprintf(stderr, "wrote %s%s\n", a.output.c_str(),
               have_gpu ? ""
                        : " (without GPU figures: `strata plan` needs them; rerun on the GPU machine or "
                          "add --assume-gpu NAME to take them from the catalogue)");
  return Status::ok();
}

}  // namespace

void register_profile(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("profile", "Measure this machine and write a hardware profile");
  static ProfileArgs a;
  cmd->add_option("-o,--output", a.output, "where to write the profile (default hardware.json)");
  cmd->add_option("--dir", a.dir, "directory on the offload disk to measure (default .)");
  cmd->add_option("--name", a.name, "profile name (default: the host name)");
  cmd->add_option("--disk-test-bytes", a.disk_bytes, "size of the disk test file (default 1GiB)");
  cmd->add_option("--dram-test-bytes", a.dram_bytes, "size of the DRAM test buffer (default 1GiB)");
  cmd->add_option("--assume-gpu", a.assume_gpu, "without a GPU: take GPU and PCIe figures from this catalogue entry");
  cmd->add_flag("--skip-disk", a.skip_disk, "do not measure the disk");
  cmd->add_flag("--topology", a.topology, "print the NUMA and PCIe topology (hwloc)");
  cmd->callback([exit_code] { *exit_code = report("profile", run_profile(a)); });
}

}  // namespace strata::tools
