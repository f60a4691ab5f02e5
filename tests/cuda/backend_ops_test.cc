// Every op of the CUDA backend against the CPU backend (the reference) on the same inputs, across
// shapes and both activation dtypes, with per-op tolerances. Outputs start poisoned so that an
// element no kernel writes fails the comparison. Skips without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "model/config.h"

namespace strata::cuda {
namespace {

using testing::CudaVsCpu;
using testing::expect_matches;
using testing::on;
using testing::poisoned;
using testing::random_host;
using testing::vec_on;

using CudaOps = CudaVsCpu;

struct LinearShape {
  int64_t m, n, k;
};

TEST_P(CudaOps, LinearWithAndWithoutBias) {
  // m <= 8 with k % 8 == 0 takes the skinny kernel (bias fused), the rest cuBLAS.
  const LinearShape shapes[] = {{1, 64, 32},     {7, 200, 96},    {8, 1000, 4096},
                                {3, 50, 36},     {16, 512, 256},  {130, 384, 1024}};
  uint32_t seed = 1;
  for (const auto& s : shapes) {
    for (bool with_bias : {false, true}) {
      const Tensor x = random_host({s.m, s.k}, seed++, dt());
      const Tensor w = random_host({s.n, s.k}, seed++, dt(), -0.1f, 0.1f);
      const Tensor b = random_host({s.n}, seed++, dt());
      Tensor gw = gpu_->upload(w, compute::WeightKind::kLinear).value();
      Tensor cw = cpu_->upload(w, compute::WeightKind::kLinear).value();
      Tensor gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
      Tensor gy = poisoned(*gpu_, {s.m, s.n}), cy = poisoned(*cpu_, {s.m, s.n});
      gpu_->linear(on(*gpu_, x), gw, with_bias ? &gb : nullptr, gy);
      cpu_->linear(on(*cpu_, x), cw, with_bias ? &cb : nullptr, cy);
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), 2 * tol(), 4 * tol(),
                     "linear " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                         std::to_string(s.k) + (with_bias ? " +bias" : ""));
    }
  }
}

TEST_P(CudaOps, NormsOverRowsOfManyWidths) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 7}, {3, 64}, {5, 4096}, {300, 257}, {2, 12288}};
  uint32_t seed = 100;
  for (auto [t, c] : shapes) {
    const Tensor x = random_host({t, c}, seed++, dt(), -2.0f, 3.0f);
    const Tensor g = random_host({c}, seed++, dt(), 0.5f, 1.5f);
    const Tensor b = random_host({c}, seed++, dt());
    const std::string shape = std::to_string(t) + "x" + std::to_string(c);
    Tensor gg = vec_on(*gpu_, g), cg = vec_on(*cpu_, g), gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
    for (int affine = 0; affine < 2; ++affine) {
      Tensor gy = poisoned(*gpu_, {t, c}), cy = poisoned(*cpu_, {t, c});
      gpu_->layer_norm(on(*gpu_, x), affine ? &gg : nullptr, affine ? &gb : nullptr, 1e-5f, gy);
      cpu_->layer_norm(on(*cpu_, x), affine ? &cg : nullptr, affine ? &cb : nullptr, 1e-5f, cy);
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), tol(), 2 * tol(),
                     "layer_norm " + shape + (affine ? " affine" : ""));
    }
    Tensor gy = poisoned(*gpu_, {t, c}), cy = poisoned(*cpu_, {t, c});
    gpu_->rms_norm(on(*gpu_, x), gg, 1e-6f, gy);
    cpu_->rms_norm(on(*cpu_, x), cg, 1e-6f, cy);
    expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), tol(), 2 * tol(),
                   "rms_norm " + shape);
    // In place, as the final norm runs.
    Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
    gpu_->rms_norm(gx, gg, 1e-6f, gx);
    cpu_->rms_norm(cx, cg, 1e-6f, cx);
    expect_matches(gpu_->to_host_f32(gx), cpu_->to_host_f32(cx), tol(), 2 * tol(),
                   "rms_norm in place " + shape);
  }
}

TEST_P(CudaOps, ElementwiseOps) {
  uint32_t seed = 200;
  for (int64_t n : {1, 7, 8, 4096, 100003}) {
    const Tensor a = random_host({n}, seed++, dt(), -4.0f, 4.0f);
    const Tensor b = random_host({n}, seed++, dt(), -4.0f, 4.0f);
    const std::string what = " n=" + std::to_string(n);
    {
      Tensor gy = poisoned(*gpu_, {n}), cy = poisoned(*cpu_, {n});
      gpu_->add(on(*gpu_, a), on(*gpu_, b), gy);
      cpu_->add(on(*cpu_, a), on(*cpu_, b), cy);
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), tol(), tol(), "add" + what);
    }
    {
      Tensor gx = on(*gpu_, a), cx = on(*cpu_, a);
      gpu_->relu(gx);
      cpu_->relu(cx);
      expect_matches(gpu_->to_host_f32(gx), cpu_->to_host_f32(cx), 0, 0, "relu" + what);
    }
    {
      Tensor gg = on(*gpu_, a), cg = on(*cpu_, a);  // y aliases gate, as the MLP calls it
      gpu_->silu_mul(gg, on(*gpu_, b), gg);
      cpu_->silu_mul(cg, on(*cpu_, b), cg);
      expect_matches(gpu_->to_host_f32(gg), cpu_->to_host_f32(cg), tol(), 2 * tol(),
                     "silu_mul" + what);
    }
  }
}

TEST_P(CudaOps, EmbeddingAndGatherRowsCopyExactly) {
  uint32_t seed = 300;
  for (int64_t c : {5, 64, 4096}) {
    const Tensor table = random_host({50, c}, seed++, dt());
    const std::vector<int32_t> ids = {3, 0, 49, 3, 17, 17, 2};
    const int64_t n = static_cast<int64_t>(ids.size());
    Tensor gt = gpu_->upload(table, compute::WeightKind::kTable).value();
    Tensor ct = cpu_->upload(table, compute::WeightKind::kTable).value();
    Tensor gy = poisoned(*gpu_, {n, c}), cy = poisoned(*cpu_, {n, c});
    gpu_->embedding(gt, ids, gy);
    cpu_->embedding(ct, ids, cy);
    expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), 0, 0,
                   "embedding c=" + std::to_string(c));
    const std::vector<int32_t> rows = {6, 0, 2};
    Tensor gr = poisoned(*gpu_, {3, c}), cr = poisoned(*cpu_, {3, c});
    gpu_->gather_rows(gy, rows, gr);
    cpu_->gather_rows(cy, rows, cr);
    expect_matches(gpu_->to_host_f32(gr), cpu_->to_host_f32(cr), 0, 0,
                   "gather_rows c=" + std::to_string(c));
  }
}

TEST_P(CudaOps, RopeDefaultAndLlama3Scaling) {
  model::RopeConfig plain;
  plain.theta = 10000.0;
  model::RopeConfig llama3;
  llama3.theta = 500000.0;
  llama3.type = model::RopeType::kLlama3;
  llama3.factor = 8.0;
  llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0;
  llama3.original_max_position_embeddings = 8192;
  uint32_t seed = 400;
  for (const auto& cfg : {plain, llama3}) {
    for (int64_t d : {16, 64, 128}) {
      const compute::RopeTable table = compute::make_rope_table(cfg, d);
      const int64_t t = 37, heads = 3;
      std::vector<int32_t> pos(t);
      for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>((i * 131) % 5000);
      const Tensor x = random_host({t, heads, d}, seed++, dt());
      Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
      gpu_->rope(gx, pos, table);
      cpu_->rope(cx, pos, table);
      expect_matches(gpu_->to_host_f32(gx), cpu_->to_host_f32(cx), tol(), 4 * tol(),
                     "rope d=" + std::to_string(d));
    }
  }
}

TEST_P(CudaOps, AllocationThatDoesNotFitIsAnError) {
  auto r = gpu_->allocate(DType::kF16, {int64_t{1} << 40});  // 2 TiB
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(r.status().message().find("cannot allocate"), std::string::npos)
      << r.status().message();
  // The backend still works afterwards.
  Tensor y = poisoned(*gpu_, {4});
  gpu_->add(on(*gpu_, random_host({4}, 1, dt())), on(*gpu_, random_host({4}, 2, dt())), y);
  EXPECT_TRUE(std::isfinite(gpu_->to_host_f32(y).data<float>()[0]));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace strata::cuda
