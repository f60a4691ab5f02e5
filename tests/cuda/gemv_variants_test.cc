// Every built variant of the skinny GEMV kernels (CUDA-core: rows per warp, chunks per lane and
// pipeline step; tensor-core: warps per block and chunks; cuda/gemv.h), dense and int4-g64,
// launched directly against the CPU backend's linear() on the same weights (the int4 ones through
// the reference dequantiser):
// two products sharing x, one with a bias, on a row count that leaves blocks part empty and a k
// whose chunks do not fill the lanes' last pipeline step. Skips without a GPU; a build without
// CUDA has no kernels to test, and this file is empty there.
#include <gtest/gtest.h>

#ifdef STRATA_HAVE_CUDA

#include <string>
#include <vector>

#include "compute/int4.h"
#include "cuda/cuda_backend_impl.h"
#include "cuda/cuda_test_util.h"
#include "cuda/elementwise.h"
#include "cuda/gemv.h"
#include "cuda/int4_gemm.h"
#include "cuda/int4_weights.h"

namespace strata::cuda {
namespace {

using testing::CudaVsCpu;
using testing::expect_matches;
using testing::on;
using testing::poisoned;
using testing::random_host;
using testing::vec_on;

class GemvVariants : public CudaVsCpu {
 protected:
  // Random weights [ns[s], k] on the GPU (dense, or int4-g64 blobs) and their CPU copies (the
  // int4 ones through the reference dequantiser).
  void make_weights(bool int4, const int64_t (&ns)[2], int64_t k, uint32_t& seed, Tensor (&gw)[2],
                    Tensor (&cw)[2]) {
    for (int s = 0; s < 2; ++s) {
      const Tensor w = random_host({ns[s], k}, seed++, int4 ? DType::kF32 : dt(), -0.1f, 0.1f);
      if (int4) {
        std::vector<std::byte> blob(compute::int4_blob_bytes(ns[s], k));
        ASSERT_TRUE(compute::quantise_int4(w, blob).is_ok());
        const compute::Int4View view = compute::int4_view(blob, w.shape()).value();
        gw[s] = upload_int4(*gpu_, view).value();
        cw[s] = cpu_->upload(compute::dequantise_int4(view), compute::WeightKind::kLinear).value();
      } else {
        gw[s] = on(*gpu_, w);
        cw[s] = cpu_->upload(w, compute::WeightKind::kLinear).value();
      }
    }
  }
};

// Two products sharing x: w[s] [ns[s], k] into y[s], the first with bias b.
GemvBatch two_products(const Tensor (&w)[2], const int64_t (&ns)[2], Tensor (&y)[2],
                       const Tensor& b) {
  GemvBatch batch;
  batch.count = 2;
  for (int s = 0; s < 2; ++s) {
    batch.seg[s].w = w[s].raw();
    batch.seg[s].n = ns[s];
    batch.seg[s].y = y[s].raw();
  }
  batch.seg[0].bias = b.data<float>();
  return batch;
}

TEST_P(GemvVariants, EveryVariantMatchesTheCpuAtEveryBatchSize) {
  constexpr int64_t kK = 4160;
  const int64_t ns[2] = {301, 37};
  uint32_t seed = 7000;
  int variants_run = 0;
  for (bool int4 : {false, true}) {
    // Weights (and the CPU's copies) once per kind; x per batch size.
    Tensor gw[2], cw[2];
    make_weights(int4, ns, kK, seed, gw, cw);
    const Tensor b = random_host({ns[0]}, seed++, dt());
    Tensor gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
    for (int64_t m = 1; m <= 8; ++m) {
      const Tensor x = random_host({m, kK}, seed++, dt());
      Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
      Tensor cy[2];
      for (int s = 0; s < 2; ++s) {
        cy[s] = poisoned(*cpu_, {m, ns[s]});
        cpu_->linear(cx, cw[s], s == 0 ? &cb : nullptr, cy[s]);
      }
      for (int r : {1, 2, 4}) {
        for (int u : {1, 2, 4}) {
          for (int split : {1, 2, 4}) {
            if (!int4 && split > 1) continue;  // split-k is the int4 kernel's
            const GemvVariant v{r, u, split};
            if (!gemv_variant_built(m, v)) continue;
            Tensor gy[2] = {poisoned(*gpu_, {m, ns[0]}), poisoned(*gpu_, {m, ns[1]})};
            const GemvBatch batch = two_products(gw, ns, gy, gb);
            CudaBackend* cuda = as_cuda(*gpu_);
            if (int4) {
              launch_gemv_int4(dt(), gx.raw(), batch, m, kK, false, cuda->stream(), v);
            } else {
              launch_gemv(dt(), gx.raw(), batch, m, kK, false, cuda->stream(), v);
            }
            const std::string what = std::string(int4 ? "int4" : "dense") +
                                     " m=" + std::to_string(m) + " rows/warp " + std::to_string(r) +
                                     " chunks/step " + std::to_string(u) + " split-k " +
                                     std::to_string(split);
            for (int s = 0; s < 2; ++s)
              expect_matches(gpu_->to_host_f32(gy[s]), cpu_->to_host_f32(cy[s]), 2 * tol(),
                             4 * tol(), what + ", product " + std::to_string(s));
            ++variants_run;
          }
        }
      }
    }
  }
  // 9 variants at batch sizes 1-4, 6 at 5-8, dense once, int4 at 3 splits of k.
  EXPECT_EQ(variants_run, 4 * (4 * 9 + 4 * 6));
}

// The tensor-core kernels (dense, and int4-g64 for F16) at batch sizes that fill 1 and 2 tiles of
// 8 rows exactly and partly (and batch 1 for int4, which runs there by default), every variant,
// one product with a bias, both with ReLU: the same checks against the CPU.
TEST_P(GemvVariants, TensorCoreKernelsMatchTheCpu) {
  if (!gemv_mma_supported(kGemvMmaMaxRows)) GTEST_SKIP() << "no mma.sync on this device";
  constexpr int64_t kK = 4160;
  const int64_t ns[2] = {301, 37};
  uint32_t seed = 7100;
  int runs = 0;
  for (bool int4 : {false, true}) {
    if (int4 && dt() != DType::kF16) continue;  // BF16 int4 stays on the CUDA cores
    Tensor gw[2], cw[2];
    make_weights(int4, ns, kK, seed, gw, cw);
    const Tensor b = random_host({ns[0]}, seed++, dt());
    Tensor gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
    for (int64_t m : {1, 2, 3, 8, 9, 16}) {
      if (m == 1 && !int4) continue;
      const Tensor x = random_host({m, kK}, seed++, dt());
      Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
      Tensor cy[2];
      for (int s = 0; s < 2; ++s) {
        cy[s] = poisoned(*cpu_, {m, ns[s]});
        cpu_->linear(cx, cw[s], s == 0 ? &cb : nullptr, cy[s]);
      }
      cpu_->relu(cy[0]);
      cpu_->relu(cy[1]);
      for (const GemvMmaVariant v : {GemvMmaVariant{4, 1}, GemvMmaVariant{4, 2},
                                     GemvMmaVariant{8, 1}, GemvMmaVariant{8, 2}}) {
        Tensor gy[2] = {poisoned(*gpu_, {m, ns[0]}), poisoned(*gpu_, {m, ns[1]})};
        const GemvBatch batch = two_products(gw, ns, gy, gb);
        cudaStream_t stream = as_cuda(*gpu_)->stream();
        if (int4)
          launch_gemv_int4_mma(gx.raw(), batch, m, kK, true, stream, v);
        else
          launch_gemv_mma(dt(), gx.raw(), batch, m, kK, true, stream, v);
        const std::string what = std::string(int4 ? "int4 " : "") + "mma m=" + std::to_string(m) +
                                 " warps " + std::to_string(v.warps) + " chunks/step " +
                                 std::to_string(v.chunks_per_step);
        for (int s = 0; s < 2; ++s)
          expect_matches(gpu_->to_host_f32(gy[s]), cpu_->to_host_f32(cy[s]), 2 * tol(), 4 * tol(),
                         what + ", product " + std::to_string(s));
        ++runs;
      }
    }
  }
  EXPECT_EQ(runs, dt() == DType::kF16 ? 44 : 20);
}

// A kernel that writes a weight just before a GEMV that may start early (cuda/chain.cuh) is
// finished before the GEMV's first loads: each round rewrites the same buffers on the GPU (a
// fill, then a conversion to the activation dtype and the int4 quantiser) and multiplies at
// once, and every round's products must be of that round's weights.
TEST_P(GemvVariants, ProductsReadTheWeightsWrittenJustBefore) {
  constexpr int64_t kN = 1000, kK = 4096;
  constexpr int kRounds = 6;
  CudaBackend* cuda = as_cuda(*gpu_);
  cudaStream_t stream = cuda->stream();
  Tensor src = gpu_->allocate(DType::kF32, {kN, kK}).value();
  Tensor dense = gpu_->allocate(dt(), {kN, kK}).value();
  const int64_t blob_bytes = compute::int4_blob_bytes(kN, kK);
  Tensor blob = gpu_->allocate(DType::kF32, {(blob_bytes + 3) / 4 + 1}).value();
  Tensor bad = gpu_->allocate(DType::kF32, {1}).value();
  const Tensor x = random_host({1, kK}, 7200, dt());
  Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
  std::vector<Tensor> y_dense, y_int4, w_host;
  for (int r = 0; r < kRounds; ++r) {
    y_dense.push_back(poisoned(*gpu_, {1, kN}));
    y_int4.push_back(poisoned(*gpu_, {1, kN}));
  }
  for (int r = 0; r < kRounds; ++r) {
    launch_fill_uniform(DType::kF32, src.raw(), kN * kK, 7300 + r, 0.0f, 0.1f, stream);
    GemvBatch batch;
    batch.count = 1;
    batch.seg[0] = {dense.raw(), nullptr, y_dense[r].raw(), kN};
    launch_convert(DType::kF32, src.raw(), dt(), dense.raw(), kN * kK, stream);
    launch_gemv(dt(), gx.raw(), batch, 1, kK, false, stream);
    batch.seg[0] = {blob.raw(), nullptr, y_int4[r].raw(), kN};
    launch_quantise_int4(DType::kF32, src.raw(), kN, kK, blob.raw(),
                         static_cast<unsigned*>(bad.raw()), stream);
    launch_gemv_int4(dt(), gx.raw(), batch, 1, kK, false, stream);
    w_host.push_back(gpu_->to_host_f32(src));  // waits for the round
  }
  for (int r = 0; r < kRounds; ++r) {
    const Tensor w = w_host[r];
    Tensor w_dt = Tensor::host(DType::kF32, {kN, kK});  // w rounded to the activation dtype
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float v = w.data<float>()[i];
      w_dt.data<float>()[i] =
          dt() == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
    }
    std::vector<std::byte> host_blob(blob_bytes);
    ASSERT_TRUE(compute::quantise_int4(w, host_blob).is_ok());
    const compute::Int4View view = compute::int4_view(host_blob, w.shape()).value();
    const Tensor cw[2] = {
        cpu_->upload(w_dt, compute::WeightKind::kLinear).value(),
        cpu_->upload(compute::dequantise_int4(view), compute::WeightKind::kLinear).value()};
    const Tensor* gy[2] = {&y_dense[r], &y_int4[r]};
    for (int s = 0; s < 2; ++s) {
      Tensor cy = poisoned(*cpu_, {1, kN});
      cpu_->linear(cx, cw[s], nullptr, cy);
      expect_matches(gpu_->to_host_f32(*gy[s]), cpu_->to_host_f32(cy), 2 * tol(), 4 * tol(),
                     std::string(s == 0 ? "dense" : "int4") + " round " + std::to_string(r));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GemvVariants, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace strata::cuda

#endif  // STRATA_HAVE_CUDA
