// strata_gemv_sweep: the skinny GEMV kernels (dense and int4-g64) over every built variant (rows
// per warp, chunks per lane and step) at batch sizes 1, 2, 4 and 8, and the dense tensor-core
// kernel (chunks per step 2 and 4) beside cuBLAS at the --mma-batches, on the projection shapes of
// llama-3-8b and opt-6.7b, with the weights streamed from HBM: each timed launch reads a different
// copy, and the copies together are many times the L2 cache. Prints JSON lines, then per (kernel,
// shape, batch) the best variant beside the default one. Needs a CUDA device.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "compute/int4.h"
#include "cuda/gemm.h"
#include "cuda/gemv.h"
#include "cuda/int4_gemm.h"

namespace {

struct ShapeCase {
  std::string model, name;
  std::vector<int64_t> n;  // the segments of one launch (weights sharing x)
  int64_t k;
};

#define CHECK_CUDA(call)                                               \
  do {                                                                 \
    cudaError_t e_ = (call);                                           \
    if (e_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                    \
    }                                                                  \
  } while (0)

struct Point {
  double us = 0, gbps = 0;
};

// A kernel and its variant: the CUDA-core GEMV (rows per warp, chunks per step, and for int4 the
// warps splitting k), cuBLAS, or the tensor-core kernel (warps per block, chunks per step).
enum class Kind { kSimt, kCublas, kMma };
struct Variant {
  Kind kind;
  int a, b;
  int split = 0;
  std::string name() const {
    if (kind == Kind::kCublas) return "cublas";
    return std::string(kind == Kind::kMma ? "mma " : "gemv ") + std::to_string(a) + "," +
           std::to_string(b) + (split > 0 ? "/" + std::to_string(split) : "");
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace strata;
  using namespace strata::cuda;
  std::string commit = "unknown";
  int reps = 40;
  double rotate_mib = 1024;
  std::vector<int> batches = {1, 2, 4, 8}, mma_batches = {2, 4, 8, 16, 32};
  std::string only;
  CLI::App app{"strata_gemv_sweep: the skinny GEMV variants with weights streamed from HBM"};
  app.add_option("--commit", commit, "commit to record");
  app.add_option("--reps", reps, "timed launches per point")->capture_default_str();
  app.add_option("--rotate-mib", rotate_mib, "bytes of weight copies to rotate through")
      ->capture_default_str();
  app.add_option("--batches", batches, "batch sizes (1-8) for the CUDA-core kernels")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--only", only, "run only the projections whose model/name contains this");
  app.add_option("--mma-batches", mma_batches, "batch sizes for the tensor-core kernel and cuBLAS")
      ->delimiter(',')
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::vector<ShapeCase> cases = {
      {"llama-3-8b", "qkv", {4096, 1024, 1024}, 4096},
      {"llama-3-8b", "o", {4096}, 4096},
      {"llama-3-8b", "gate+up", {14336, 14336}, 4096},
      {"llama-3-8b", "down", {4096}, 14336},
      {"llama-3-8b", "head", {128256}, 4096},
      {"opt-6.7b", "qkv", {4096, 4096, 4096}, 4096},
      {"opt-6.7b", "fc1", {16384}, 4096},
      {"opt-6.7b", "fc2", {4096}, 16384},
  };
  const DType dt = DType::kF16;
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  Gemm gemm;
  if (!gemm.init(stream).is_ok()) {
    std::fprintf(stderr, "cannot initialise cuBLAS\n");
    return 1;
  }
  int64_t max_m = 8;
  for (int m : mma_batches) max_m = std::max<int64_t>(max_m, m);

  struct Best {
    Variant v;
    Point p;
    Point def;
  };
  std::map<std::string, Best> best;  // "kind/model/name/m"
  std::vector<std::string> order;
  for (const bool int4 : {false, true}) {
    for (const ShapeCase& c : cases) {
      if (!only.empty() && (c.model + "/" + c.name).find(only) == std::string::npos) continue;
      uint64_t bytes = 0;
      std::vector<uint64_t> seg_bytes;
      for (int64_t n : c.n) {
        seg_bytes.push_back(int4 ? compute::int4_blob_bytes(n, c.k) : uint64_t(n * c.k * 2));
        bytes += seg_bytes.back();
      }
      const int copies = std::max<int>(2, static_cast<int>(rotate_mib * 1048576.0 / bytes + 0.999));
      std::vector<void*> w(copies * c.n.size());
      for (size_t i = 0; i < w.size(); ++i) {
        const uint64_t b = seg_bytes[i % c.n.size()];
        CHECK_CUDA(cudaMalloc(&w[i], b));
        CHECK_CUDA(cudaMemset(w[i], 0x3c, b));  // fp16 0x3c3c: 1.06 (weights, scales and mins)
      }
      int64_t ymax = 0;
      for (int64_t n : c.n) ymax = std::max(ymax, n);
      void *x, *y;
      CHECK_CUDA(cudaMalloc(&x, max_m * c.k * 2));
      CHECK_CUDA(cudaMemset(x, 0x1c, max_m * c.k * 2));
      CHECK_CUDA(cudaMalloc(&y, max_m * ymax * 2 * c.n.size()));
      std::vector<int> ms = batches;
      for (int m : mma_batches)
        if ((!int4 || m <= kGemvMmaMaxRows) && std::find(ms.begin(), ms.end(), m) == ms.end())
          ms.push_back(m);
      for (int m : ms) {
        std::vector<Variant> variants;
        const bool simt = std::find(batches.begin(), batches.end(), m) != batches.end();
        const bool mma = std::find(mma_batches.begin(), mma_batches.end(), m) != mma_batches.end();
        if (simt) {
          for (int r : {1, 2, 4})
            for (int u : {1, 2, 4}) {
              if (!gemv_variant_built(m, GemvVariant{r, u})) continue;
              if (!int4) {
                variants.push_back({Kind::kSimt, r, u});
                continue;
              }
              for (int split : {1, 2, 4}) variants.push_back({Kind::kSimt, r, u, split});
            }
        }
        if (mma) {
          if (!int4) variants.push_back({Kind::kCublas, 0, 0});
          if (m <= kGemvMmaMaxRows)
            for (int wp : {4, 8})
              for (int u : {1, 2}) variants.push_back({Kind::kMma, wp, u});
        }
        // What linear() runs at this batch size.
        Variant def{Kind::kCublas, 0, 0};
        if (int4 && m >= 2) {
          def = {Kind::kMma, kGemvInt4MmaDefault.warps, kGemvInt4MmaDefault.chunks_per_step};
        } else if (int4) {  // the split picked by the shape: matched by kernel and rows below
          const GemvVariant d = default_gemv_variant(m, int4);
          def = {Kind::kSimt, d.rows_per_warp, d.chunks_per_step, -1};
        } else if (m == 1) {
          const GemvVariant d = default_gemv_variant(m, int4);
          def = {Kind::kSimt, d.rows_per_warp, d.chunks_per_step};
        } else if (m <= kGemvMmaMaxRows) {
          def = {Kind::kMma, kGemvMmaDefault.warps, kGemvMmaDefault.chunks_per_step};
        }
        int64_t rows = 0;
        for (int64_t n : c.n) rows += n;
        const int default_split = gemv_int4_split_k(rows, def.a > 0 ? def.a : 1);
        for (const Variant& v : variants) {
          auto launch = [&](int copy) {
            GemvBatch b;
            b.count = static_cast<int>(c.n.size());
            for (int s = 0; s < b.count; ++s) {
              b.seg[s].w = w[copy * c.n.size() + s];
              b.seg[s].n = c.n[s];
              b.seg[s].y = static_cast<char*>(y) + s * max_m * ymax * 2;
            }
            if (v.kind == Kind::kCublas) {
              for (int s = 0; s < b.count; ++s)
                gemm.run(dt, x, b.seg[s].w, b.seg[s].y, m, b.seg[s].n, c.k);
            } else if (v.kind == Kind::kMma && int4) {
              launch_gemv_int4_mma(x, b, m, c.k, false, stream, GemvMmaVariant{v.a, v.b});
            } else if (v.kind == Kind::kMma) {
              launch_gemv_mma(dt, x, b, m, c.k, false, stream, GemvMmaVariant{v.a, v.b});
            } else if (int4) {
              launch_gemv_int4(dt, x, b, m, c.k, false, stream, GemvVariant{v.a, v.b, v.split});
            } else {
              launch_gemv(dt, x, b, m, c.k, false, stream, GemvVariant{v.a, v.b});
            }
          };
          for (int i = 0; i < copies; ++i) launch(i);  // warm-up
          CHECK_CUDA(cudaEventRecord(e0, stream));
          for (int i = 0; i < reps; ++i) launch(i % copies);
          CHECK_CUDA(cudaEventRecord(e1, stream));
          CHECK_CUDA(cudaEventSynchronize(e1));
          float ms = 0;
          CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
          Point p;
          p.us = 1e3 * ms / reps;
          p.gbps = bytes / (p.us * 1e-6) / 1e9;
          std::printf(
              "{\"bench\":\"gemv\",\"int4\":%s,\"model\":\"%s\",\"weights\":\"%s\",\"m\":%d,"
              "\"kernel\":\"%s\",\"us\":%.2f,\"gbps\":%.1f,\"device\":\"%s\",\"commit\":\"%s\"}\n",
              int4 ? "true" : "false", c.model.c_str(), c.name.c_str(), m, v.name().c_str(), p.us,
              p.gbps, prop.name, commit.c_str());
          const std::string key = std::string(int4 ? "int4" : "f16") + "|" + c.model + "|" +
                                  c.name + "|" + std::to_string(m);
          auto it = best.find(key);
          if (it == best.end()) {
            order.push_back(key);
            it = best.emplace(key, Best{v, p, {}}).first;
          } else if (p.gbps > it->second.p.gbps) {
            it->second.v = v;
            it->second.p = p;
          }
          if (v.kind == def.kind && v.a == def.a && v.b == def.b &&
              (def.split < 0 ? v.split == default_split : v.split == def.split))
            it->second.def = p;
        }
      }
      for (void* p : w) CHECK_CUDA(cudaFree(p));
      CHECK_CUDA(cudaFree(x));
      CHECK_CUDA(cudaFree(y));
    }
  }
  std::printf("\n%s, commit %s; weights rotated over %.0f MiB of copies\n\n", prop.name,
              commit.c_str(), rotate_mib);
  std::printf(
      "gemv R,U: the CUDA-core kernel, rows per warp and chunks per step; mma W,U: the tensor-core "
      "kernel, warps per block and chunks per step (its default: %d,%d dense, %d,%d int4).\n\n",
      kGemvMmaDefault.warps, kGemvMmaDefault.chunks_per_step, kGemvInt4MmaDefault.warps,
      kGemvInt4MmaDefault.chunks_per_step);
  std::printf("| weights | model | projection | m | best kernel | best GB/s | default GB/s |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const std::string& key : order) {
    const Best& b = best[key];
    std::string parts[4];
    size_t pos = 0;
    for (int i = 0; i < 4; ++i) {
      const size_t next = key.find('|', pos);
      parts[i] = key.substr(pos, next - pos);
      pos = next + 1;
    }
    std::printf("| %s | %s | %s | %s | %s | %.0f (%.1f us) | %.0f (%.1f us) |\n", parts[0].c_str(),
                parts[1].c_str(), parts[2].c_str(), parts[3].c_str(), b.v.name().c_str(), b.p.gbps,
                b.p.us, b.def.gbps, b.def.us);
  }
  return 0;
}
