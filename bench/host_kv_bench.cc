// strata_host_kv_bench: decode attention over a host-resident KV cache (host_kv_attention) on
// OPT-30B-like (56 heads) and Llama-70B-like (64 query / 8 kv heads) shapes, head_dim 128, fp16
// and int4-g64, one new token per sequence. Prints the KV bytes one call reads, its time
// (min/median/max over repetitions) and GB/s, next to the machine's parallel read bandwidth
// measured the same way (the ceiling). Each repetition uses another copy of the cache (a
// different "layer") so the working set exceeds the last-level cache, as in the engine.
// With --cpu-time, also the process CPU time per call (min, median) and the GB/s per CPU-second:
// on a machine shared with other work, the cost of a call without the time its threads wait for a
// core.
// Output on stdout: one JSON line per case (and one for the ceiling; with --append, one more per
// case timing the appends of one call alone), then a Markdown table.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "compute/host_kv.h"
#include "compute/int4.h"

namespace strata {
namespace {

struct Options {
  int threads = 0;
  int reps = 10;
  std::string shape = "all";  // all, opt-30b, llama-70b
  std::string kv = "all";     // all, fp16, int4
  int64_t slots = 32;
  int64_t past_min = 512, past_max = 544;
  double footprint_gib = 1.0;  // cache copies cycled through, at least this much in all
  bool portable = false;
  int64_t chunk = 0;
  int64_t heads_per_task = 0;
  int64_t prefetch = -1;
  bool no_vnni = false;
  bool append = false;  // also time the appends of one call alone, on one thread
  bool cpu_time = false;  // also report the process CPU time per call
  std::string commit = "unknown";
};

struct ShapeSpec {
  std::string name;
  int64_t hq, hkv, d;
};

struct Timing {
  double min_ms, median_ms, max_ms;
};

Timing summarise(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2], ms.back()};
}

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

// CPU time of all the process's threads: on a shared machine, the work a call costs without the
// time its threads wait for a core (pool threads waiting for tasks count too).
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

// Deterministic filler: xorshift64.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

// Fills one cache with plausible data: fp16 values in about [-1, 1]; int4 random codes with
// small positive scales and negative mins.
void fill_cache(const compute::HostKvShape& sh, std::byte* blob, uint64_t seed) {
  Rng rng{seed * 0x9E3779B97F4A7C15ull + 1};
  const int64_t rows = sh.slots * sh.max_len, e = sh.row_elems();
  if (!sh.int4) {
    auto* h = reinterpret_cast<uint16_t*>(blob);
    // Exponents 10..14 (2^-5 .. 2^-1), random mantissa and sign: finite, no subnormals.
    for (int64_t i = 0; i < rows * e; i += 4) {
      const uint64_t r = rng.next();
      for (int l = 0; l < 4; ++l) {
        const uint16_t bits = static_cast<uint16_t>(r >> (16 * l));
        h[i + l] = static_cast<uint16_t>((bits & 0x83ff) | ((10 + (bits >> 10) % 5) << 10));
      }
    }
    return;
  }
  auto* bytes = reinterpret_cast<uint64_t*>(blob);
  for (int64_t i = 0; i < rows * e / 16; ++i) bytes[i] = rng.next();
  const int64_t groups = rows * (e / compute::kInt4GroupSize);
  auto* scales = reinterpret_cast<uint16_t*>(blob + sh.scale_offset(0));
  auto* mins = reinterpret_cast<uint16_t*>(blob + sh.min_offset(0));
  for (int64_t g = 0; g < groups; ++g) {
    scales[g] = f32_to_f16(0.1f + 0.05f * static_cast<float>(rng.next() % 8) / 8.0f);
    mins[g] = f32_to_f16(-0.8f - 0.2f * static_cast<float>(rng.next() % 8) / 8.0f);
  }
}

// The machine's read bandwidth with the same pool: every thread sums its part of `buf`.
double read_ceiling_gbps(ThreadPool& pool, const std::vector<uint64_t>& buf, int reps) {
  std::vector<double> ms;
  std::vector<uint64_t> sinks(static_cast<size_t>(pool.size()) * 8);
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = now_ms();
    pool.parallel_for(pool.size(), [&](int64_t b, int64_t e) {
      for (int64_t part = b; part < e; ++part) {
        const size_t n = buf.size() / static_cast<size_t>(pool.size());
        const uint64_t* p = buf.data() + static_cast<size_t>(part) * n;
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
          a0 += p[i];
          a1 += p[i + 1];
          a2 += p[i + 2];
          a3 += p[i + 3];
        }
        sinks[static_cast<size_t>(part) * 8] = a0 ^ a1 ^ a2 ^ a3;
      }
    });
    if (r > 0) ms.push_back(now_ms() - t0);  // the first pass faults pages in
  }
  const double bytes = static_cast<double>(buf.size() * sizeof(uint64_t));
  return bytes / (summarise(ms).median_ms * 1e-3) / 1e9;
}

struct Row {
  std::string shape, kv;
  double mb, ms, gbps, pct;
  Timing t, cpu;
};

int run(const Options& o) {
  ThreadPool pool(o.threads);
  const int threads = pool.size();
  std::vector<ShapeSpec> shapes;
  if (o.shape == "all" || o.shape == "opt-30b") shapes.push_back({"opt-30b", 56, 56, 128});
  if (o.shape == "all" || o.shape == "llama-70b") shapes.push_back({"llama-70b", 64, 8, 128});
  std::vector<bool> kinds;
  if (o.kv == "all" || o.kv == "fp16") kinds.push_back(false);
  if (o.kv == "all" || o.kv == "int4") kinds.push_back(true);
  if (shapes.empty() || kinds.empty() || o.reps < 1 || o.slots < 1 || o.past_min < 0 ||
      o.past_max < o.past_min) {
    std::fprintf(stderr,
                 "strata_host_kv_bench: nothing to run: --shape must be all, opt-30b or "
                 "llama-70b, --kv all, fp16 or int4, --reps and --slots positive, "
                 "0 <= --past-min <= --past-max\n");
    return 2;
  }

  const double ceiling = [&] {
    std::vector<uint64_t> buf(size_t{1} << 27);  // 1 GiB
    for (size_t i = 0; i < buf.size(); ++i) buf[i] = i;
    return read_ceiling_gbps(pool, buf, o.reps);
  }();
  compute::HostKvTuning tuning;
  tuning.force_portable = o.portable;
  tuning.chunk_positions = o.chunk;
  tuning.kv_heads_per_task = o.heads_per_task;
  tuning.prefetch_rows = o.prefetch;
  tuning.allow_vnni = !o.no_vnni;
  const char* kernel = o.portable ? "portable" : compute::host_kv_kernel();
  std::printf(
      "{\"bench\":\"host_kv_read_ceiling\",\"threads\":%d,\"gbps\":%.2f,\"device\":\"%s\","
      "\"commit\":\"%s\"}\n",
      threads, ceiling, cpu_name().c_str(), o.commit.c_str());

  std::vector<Row> rows;
  for (const ShapeSpec& s : shapes) {
    for (bool int4 : kinds) {
      compute::HostKvShape sh{o.slots, o.past_max + 1, s.hkv, s.d, int4};
      const size_t each = sh.bytes_each();
      const int copies = static_cast<int>(std::max<double>(
          1.0, std::ceil(o.footprint_gib * (1ull << 30) / (2.0 * static_cast<double>(each)))));
      std::vector<std::vector<std::byte>> k(static_cast<size_t>(copies)),
          v(static_cast<size_t>(copies));
      k[0].resize(each);
      v[0].resize(each);
      fill_cache(sh, k[0].data(), 1);
      fill_cache(sh, v[0].data(), 2);
      for (int c = 1; c < copies; ++c) {
        k[static_cast<size_t>(c)] = k[0];
        v[static_cast<size_t>(c)] = v[0];
      }
      // One new token per sequence; past lengths spread over [past_min, past_max].
      const int64_t e = sh.row_elems(), qrow = s.hq * s.d;
      std::vector<compute::SeqSpan> seqs;
      int64_t rows_read = 0;
      for (int64_t i = 0; i < o.slots; ++i) {
        const int64_t past =
            o.past_min + (o.slots > 1 ? (o.past_max - o.past_min) * i / (o.slots - 1) : 0);
        seqs.push_back(
            {static_cast<int32_t>(i), static_cast<int32_t>(past), 1, static_cast<int32_t>(i)});
        rows_read += past + 1;
      }
      std::vector<uint16_t> q(static_cast<size_t>(o.slots * qrow)), out(q.size());
      std::vector<uint16_t> kn(static_cast<size_t>(o.slots * e)), vn(kn.size());
      Rng rng{7};
      for (auto* vec : {&q, &kn, &vn}) {
        for (auto& h : *vec) h = f32_to_f16(static_cast<float>(rng.next() % 2001) / 1000.0f - 1.0f);
      }
      const double row_bytes = int4 ? static_cast<double>(e / 2 + (e / compute::kInt4GroupSize) * 4)
                                    : static_cast<double>(e * 2);
      const double bytes = 2.0 * row_bytes * static_cast<double>(rows_read);  // k and v
      const compute::AttentionParams params{1.0f / std::sqrt(static_cast<float>(s.d)), {}};

      std::vector<double> ms, cpu;
      for (int r = 0; r < o.reps + copies; ++r) {  // the first pass over the copies warms up
        const size_t c = static_cast<size_t>(r % copies);
        const compute::HostKvView view{sh, k[c].data(), v[c].data()};
        const double c0 = cpu_ms(), t0 = now_ms();
        compute::host_kv_attention(pool, view, s.hq, q.data(), kn.data(), vn.data(), seqs, params,
                                   out.data(), tuning);
        if (r >= copies) {
          ms.push_back(now_ms() - t0);
          cpu.push_back(cpu_ms() - c0);
        }
      }
      if (o.append) {
        // The appends of one call alone (what a call does before its barrier), on this thread,
        // over the same cache copies.
        std::vector<double> ams;
        for (int r = 0; r < o.reps + copies; ++r) {
          const size_t c = static_cast<size_t>(r % copies);
          const compute::HostKvView view{sh, k[c].data(), v[c].data()};
          const double t0 = now_ms();
          for (const compute::SeqSpan& sp : seqs) {
            compute::host_kv_append(view, sp.slot, sp.past_len, sp.num_tokens,
                                    kn.data() + int64_t{sp.offset} * e,
                                    vn.data() + int64_t{sp.offset} * e);
          }
          if (r >= copies) ams.push_back(now_ms() - t0);
        }
        const Timing at = summarise(ams);
        std::printf(
            "{\"bench\":\"host_kv_append\",\"shape\":\"%s\",\"kv\":\"%s\",\"slots\":%lld,"
            "\"rows\":%lld,\"threads\":1,\"reps\":%d,\"min_ms\":%.4f,\"median_ms\":%.4f,"
            "\"max_ms\":%.4f,\"device\":\"%s\",\"commit\":\"%s\"}\n",
            s.name.c_str(), int4 ? "int4-g64" : "fp16", static_cast<long long>(o.slots),
            static_cast<long long>(2 * o.slots), o.reps, at.min_ms, at.median_ms, at.max_ms,
            cpu_name().c_str(), o.commit.c_str());
      }
      const Timing t = summarise(ms);
      const double gbps = bytes / (t.median_ms * 1e-3) / 1e9;
      const Timing ct = summarise(cpu);
      rows.push_back({s.name, int4 ? "int4-g64" : "fp16", bytes / 1e6, t.median_ms, gbps,
                      100.0 * gbps / ceiling, t, ct});
      std::printf(
          "{\"bench\":\"host_kv_attention\",\"shape\":\"%s\",\"kv\":\"%s\",\"slots\":%lld,"
          "\"past\":[%lld,%lld],\"heads\":%lld,\"kv_heads\":%lld,\"head_dim\":%lld,"
          "\"kernel\":\"%s\",\"threads\":%d,\"copies\":%d,\"reps\":%d,\"bytes\":%.0f,"
          "\"min_ms\":%.3f,\"median_ms\":%.3f,\"max_ms\":%.3f,\"gbps\":%.2f,"
          "\"read_ceiling_gbps\":%.2f,\"cpu_min_ms\":%.3f,\"cpu_median_ms\":%.3f,"
          "\"device\":\"%s\",\"commit\":\"%s\"}\n",
          s.name.c_str(), int4 ? "int4-g64" : "fp16", static_cast<long long>(o.slots),
          static_cast<long long>(o.past_min), static_cast<long long>(o.past_max),
          static_cast<long long>(s.hq), static_cast<long long>(s.hkv), static_cast<long long>(s.d),
          kernel, threads, copies, o.reps, bytes, t.min_ms, t.median_ms, t.max_ms, gbps, ceiling,
          ct.min_ms, ct.median_ms, cpu_name().c_str(), o.commit.c_str());
      std::fflush(stdout);
    }
  }

  std::printf(
      "\ndevice: %s, %d threads, kernel %s, commit %s, %d repetitions after warm-up; "
      "read ceiling %.1f GB/s (parallel sum of 1 GiB, median)\n\n",
      cpu_name().c_str(), threads, kernel, o.commit.c_str(), o.reps, ceiling);
  std::printf(
      "| shape | KV | MB read per call | ms min | ms median | ms max | GB/s (median) | "
      "of ceiling |%s\n|---|---|---:|---:|---:|---:|---:|---:|%s\n",
      o.cpu_time ? " CPU ms min | CPU ms median | GB/s per CPU-second (min) |" : "",
      o.cpu_time ? "---:|---:|---:|" : "");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.1f | %.3f | %.3f | %.3f | %.1f | %.0f%% |", r.shape.c_str(),
                r.kv.c_str(), r.mb, r.t.min_ms, r.t.median_ms, r.t.max_ms, r.gbps, r.pct);
    if (o.cpu_time) {
      std::printf(" %.3f | %.3f | %.1f |", r.cpu.min_ms, r.cpu.median_ms,
                  r.mb * 1e6 / (r.cpu.min_ms * 1e-3) / 1e9);
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  strata::Options o;
  CLI::App app{"Decode attention over a host-resident KV cache: time and GB/s"};
  app.add_option("--threads", o.threads, "threads in the pool, the caller included (0: all cores)");
  app.add_option("--reps", o.reps, "timed repetitions per case");
  app.add_option("--shape", o.shape, "all, opt-30b or llama-70b");
  app.add_option("--kv", o.kv, "all, fp16 or int4");
  app.add_option("--slots", o.slots, "sequences per call");
  app.add_option("--past-min", o.past_min, "shortest past length");
  app.add_option("--past-max", o.past_max, "longest past length");
  app.add_option("--footprint-gib", o.footprint_gib,
                 "cache copies cycled through per case, at least this many GiB in all");
  app.add_flag("--portable", o.portable, "use the portable kernel");
  app.add_option("--chunk", o.chunk, "positions per task (0: automatic)");
  app.add_option("--heads-per-task", o.heads_per_task, "kv heads per task (0: all)");
  app.add_option("--prefetch", o.prefetch, "rows to prefetch ahead (-1: the kernel's default)");
  app.add_flag("--no-vnni", o.no_vnni, "int4: the AVX512-BW dot products even where VNNI exists");
  app.add_flag("--append", o.append,
               "also time one call's appends alone (all sequences, one thread)");
  app.add_flag("--cpu-time", o.cpu_time,
               "also print the process CPU time per call (min, median) and GB/s per CPU-second");
  app.add_option("--commit", o.commit, "commit to print with the results");
  CLI11_PARSE(app, argc, argv);
  return strata::run(o);
}
