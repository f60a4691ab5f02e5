// Every op of the CUDA backend against the CPU backend (the reference) on the same inputs, across
// shapes and both activation dtypes, with per-op tolerances. Outputs start poisoned so that an
// element no kernel writes fails the comparison. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "compute/int4.h"
#include "cuda/cuda_test_util.h"
#include "cuda/int4_weights.h"
#include "model/config.h"

#ifdef STRATA_HAVE_CUDA
#include "cuda/gemv.h"  // gemv_mma_supported
#endif

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

// add(a, b, x) then a norm of x, as a layer's residual stream runs: the backend joins them into
// one launch (register-resident for rows of a multiple of 8 up to 16384, a generic kernel
// otherwise). Both the sum and the norm must match the CPU.
TEST_P(CudaOps, ResidualAddJoinedToTheNorm) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 4096}, {16, 4096}, {3, 768},
                                                {2, 12288}, {2, 20000}, {4, 100}};
  uint32_t seed = 150;
  for (auto [t, c] : shapes) {
    const Tensor a = random_host({t, c}, seed++, dt(), -2.0f, 3.0f);
    const Tensor b = random_host({t, c}, seed++, dt(), -1.0f, 1.0f);
    const Tensor g = random_host({c}, seed++, dt(), 0.5f, 1.5f);
    const Tensor be = random_host({c}, seed++, dt());
    Tensor gg = vec_on(*gpu_, g), cg = vec_on(*cpu_, g), gb = vec_on(*gpu_, be),
           cb = vec_on(*cpu_, be);
    for (int kind = 0; kind < 3; ++kind) {  // LayerNorm affine, LayerNorm plain, RMSNorm
      const std::string what = std::string(kind == 2 ? "add + rms_norm " : "add + layer_norm ") +
                               std::to_string(t) + "x" + std::to_string(c) +
                               (kind == 0 ? " affine" : "");
      Tensor ga = on(*gpu_, a), gbx = on(*gpu_, b), ca = on(*cpu_, a), cbx = on(*cpu_, b);
      Tensor gx = poisoned(*gpu_, {t, c}), cx = poisoned(*cpu_, {t, c});
      Tensor gy = poisoned(*gpu_, {t, c}), cy = poisoned(*cpu_, {t, c});
      gpu_->add(ga, gbx, gx);
      cpu_->add(ca, cbx, cx);
      if (kind == 2) {
        gpu_->rms_norm(gx, gg, 1e-6f, gy);
        cpu_->rms_norm(cx, cg, 1e-6f, cy);
      } else {
        gpu_->layer_norm(gx, kind == 0 ? &gg : nullptr, kind == 0 ? &gb : nullptr, 1e-5f, gy);
        cpu_->layer_norm(cx, kind == 0 ? &cg : nullptr, kind == 0 ? &cb : nullptr, 1e-5f, cy);
      }
      expect_matches(gpu_->to_host_f32(gx), cpu_->to_host_f32(cx), tol(), tol(), what + ": sum");
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), tol(), 2 * tol(), what);
    }
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

TEST_P(CudaOps, ScatterAddRowsWeighsEachRoutedRow) {
  uint32_t seed = 900;
  for (int64_t c : {64, 100, 4096}) {
    const Tensor x = random_host({3, c}, seed++, dt());
    const Tensor y = random_host({5, c}, seed++, dt());
    const std::vector<int32_t> rows = {4, 0, 2};
    const std::vector<float> weights = {0.25f, -1.5f, 0.7f};
    Tensor gy = on(*gpu_, y), cy = on(*cpu_, y);
    gpu_->scatter_add_rows(on(*gpu_, x), rows, weights, gy);
    cpu_->scatter_add_rows(on(*cpu_, x), rows, weights, cy);
    expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), tol(), 2 * tol(),
                   "scatter_add_rows c=" + std::to_string(c));
  }
}

// Llama 3's RoPE scaling (rope_type "llama3", as in its config.json).
model::RopeConfig llama3_rope() {
  model::RopeConfig c;
  c.theta = 500000.0;
  c.type = model::RopeType::kLlama3;
  c.factor = 8.0;
  c.low_freq_factor = 1.0;
  c.high_freq_factor = 4.0;
  c.original_max_position_embeddings = 8192;
  return c;
}

// A CUDA backend that launches every op on its own (fuse_ops = false), or null with a failure.
std::unique_ptr<compute::Backend> unfused_backend(DType dt) {
  CudaBackendOptions o;
  o.activation_dtype = dt;
  o.fuse_ops = false;
  auto made = make_cuda_backend(o);
  if (!made.is_ok()) {
    ADD_FAILURE() << made.status().to_string();
    return nullptr;
  }
  return std::move(made).value();
}

TEST_P(CudaOps, RopeDefaultAndLlama3Scaling) {
  model::RopeConfig plain;
  plain.theta = 10000.0;
  const model::RopeConfig llama3 = llama3_rope();
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

// Bit-for-bit equality of x (on backend a) and y (on b), through F32 host copies (exact for F16
// and BF16).
void expect_same_bits(compute::Backend& a, const Tensor& x, compute::Backend& b, const Tensor& y,
                      const std::string& what) {
  const Tensor hx = a.to_host_f32(x), hy = b.to_host_f32(y);
  ASSERT_TRUE(hx.shape() == hy.shape())
      << what << ": " << shape_string(hx.shape()) << " vs " << shape_string(hy.shape());
  const float* px = hx.data<float>();
  const float* py = hy.data<float>();
  for (int64_t i = 0; i < hx.numel(); ++i) {
    if (std::memcmp(px + i, py + i, sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": element " << i << " is " << px[i] << " against " << py[i];
      return;
    }
  }
}

// One backend's tensors after rope(q), rope(k) (unless rope_k is false) and attention.
struct RopedAttention {
  Tensor q, k, out;
  compute::LayerKvCache cache;
};

RopedAttention rope_then_attention(compute::Backend& b, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& ck, const Tensor& cv,
                                   std::span<const int32_t> positions,
                                   const compute::RopeTable& table,
                                   std::span<const compute::SeqSpan> seqs, bool rope_k) {
  // Every upload first: an upload launches whatever the backend holds back.
  RopedAttention r{on(b, q), on(b, k), poisoned(b, q.shape()), {on(b, ck), on(b, cv)}};
  const Tensor bv = on(b, v);
  compute::AttentionParams p;
  p.scale = 1.0f / std::sqrt(static_cast<float>(q.dim(2)));
  b.rope(r.q, positions, table);
  if (rope_k) b.rope(r.k, positions, table);
  b.attention(r.q, r.k, bv, r.cache, seqs, p, r.out);
  return r;
}

// rope(q), rope(k), attention as the transformer calls them: with fusion on, one launch rotates q
// and k and writes the cache when every row's position is its cache position. Everything it
// writes must equal, bit for bit, what a backend with fuse_ops = false writes, including when
// the positions differ (one row off) or only q is rotated (no joining then).
TEST_P(CudaOps, RopeJoinedToTheKvCacheWriteMatchesUnfusedBitForBit) {
  std::unique_ptr<compute::Backend> plain = unfused_backend(dt());
  ASSERT_NE(plain, nullptr);

  const model::RopeConfig cfg = llama3_rope();
  struct Batch {
    const char* name;
    std::vector<compute::SeqSpan> seqs;  // {slot, past_len, num_tokens, offset}; offsets filled in
    int32_t slots, max_len;
  };
  const Batch batches[] = {
      {"decode",
       {{0, 0, 1, 0}, {3, 1, 1, 0}, {1, 63, 1, 0}, {4, 200, 1, 0}, {2, 1500, 1, 0}},
       5,
       1600},
      {"chunked prefill", {{1, 30, 100, 0}, {0, 64, 64, 0}, {2, 7, 9, 0}}, 3, 200}};
  enum class Use { kJoined, kOtherPositions, kQOnly };
  const int64_t hq = 8, hkv = 2;
  const double attn_tol = dt() == DType::kBF16 ? 1.5e-2 : 2e-3;  // as attention_test.cc
  uint32_t seed = 500;
  for (Batch batch : batches) {
    int32_t t = 0;
    for (auto& s : batch.seqs) {
      s.offset = t;
      t += s.num_tokens;
    }
    for (int64_t d : {64, 128}) {
      const compute::RopeTable table = compute::make_rope_table(cfg, d);
      const Tensor q = random_host({t, hq, d}, seed++, dt(), -2.0f, 2.0f);
      const Tensor k = random_host({t, hkv, d}, seed++, dt(), -2.0f, 2.0f);
      const Tensor v = random_host({t, hkv, d}, seed++, dt());
      const Tensor ck =
          random_host({batch.slots, batch.max_len, hkv, d}, seed++, dt(), -2.0f, 2.0f);
      const Tensor cv = random_host({batch.slots, batch.max_len, hkv, d}, seed++, dt());
      for (Use use : {Use::kJoined, Use::kOtherPositions, Use::kQOnly}) {
        std::vector<int32_t> pos;
        for (const auto& s : batch.seqs)
          for (int32_t i = 0; i < s.num_tokens; ++i) pos.push_back(s.past_len + i);
        if (use == Use::kOtherPositions) pos.back() += 1;
        const std::string what = std::string(batch.name) + " d=" + std::to_string(d) +
                                 (use == Use::kJoined           ? ""
                                  : use == Use::kOtherPositions ? " other positions"
                                                                : " q only");
        const bool rope_k = use != Use::kQOnly;
        RopedAttention f =
            rope_then_attention(*gpu_, q, k, v, ck, cv, pos, table, batch.seqs, rope_k);
        RopedAttention u =
            rope_then_attention(*plain, q, k, v, ck, cv, pos, table, batch.seqs, rope_k);
        expect_same_bits(*gpu_, f.q, *plain, u.q, what + ": q");
        expect_same_bits(*gpu_, f.k, *plain, u.k, what + ": k");
        expect_same_bits(*gpu_, f.out, *plain, u.out, what + ": out");
        expect_same_bits(*gpu_, f.cache.k, *plain, u.cache.k, what + ": cache k");
        expect_same_bits(*gpu_, f.cache.v, *plain, u.cache.v, what + ": cache v");
        if (use != Use::kJoined) continue;
        // Both against the CPU reference, so that a path both backends share cannot hide a bug.
        RopedAttention c =
            rope_then_attention(*cpu_, q, k, v, ck, cv, pos, table, batch.seqs, true);
        expect_matches(gpu_->to_host_f32(f.cache.k), cpu_->to_host_f32(c.cache.k), tol(), 4 * tol(),
                       what + ": cache k against the CPU");
        expect_matches(gpu_->to_host_f32(f.out), cpu_->to_host_f32(c.out), 2 * attn_tol,
                       8 * attn_tol, what + ": out against the CPU");
      }
    }
  }
}

// gate = linear(x, w_gate), up = linear(x, w_up), silu_mul(gate, up, gate), as the Llama MLP
// calls them, on backend b (every upload and allocation first: they launch what b holds back).
Tensor gated_mlp(compute::Backend& b, const Tensor& x, const Tensor& wg, const Tensor& wu) {
  const Tensor bx = on(b, x);
  Tensor gate = poisoned(b, {x.dim(0), wg.dim(0)}), up = poisoned(b, {x.dim(0), wg.dim(0)});
  b.linear(bx, wg, nullptr, gate);
  b.linear(bx, wu, nullptr, up);
  b.silu_mul(gate, up, gate);
  return gate;
}

// With fusion on, the held gate and up products and the SiLU-gated product run as one launch (the
// tensor-core kernels from 2 rows, int4 there for F16 only; the int4 CUDA-core kernel at batch
// 1). Every output is bit-identical to a backend with fuse_ops = false and matches the CPU.
TEST_P(CudaOps, GatedMlpProductsInOneLaunch) {
#ifdef STRATA_HAVE_CUDA
  if (!gemv_mma_supported(kGemvMmaMaxRows)) GTEST_SKIP() << "no mma.sync on this device";
#endif
  std::unique_ptr<compute::Backend> plain = unfused_backend(dt());
  ASSERT_NE(plain, nullptr);
  constexpr int64_t kN = 301, kK = 4160;
  uint32_t seed = 900;
  int runs = 0;
  for (bool int4 : {false, true}) {
    Tensor fw[2], pw[2], cw[2];
    for (int s = 0; s < 2; ++s) {
      const Tensor w = random_host({kN, kK}, seed++, int4 ? DType::kF32 : dt(), -0.1f, 0.1f);
      if (int4) {
        std::vector<std::byte> blob(compute::int4_blob_bytes(kN, kK));
        ASSERT_TRUE(compute::quantise_int4(w, blob).is_ok());
        const compute::Int4View view = compute::int4_view(blob, w.shape()).value();
        fw[s] = upload_int4(*gpu_, view).value();
        pw[s] = upload_int4(*plain, view).value();
        cw[s] = cpu_->upload(compute::dequantise_int4(view), compute::WeightKind::kLinear).value();
      } else {
        fw[s] = gpu_->upload(w, compute::WeightKind::kLinear).value();
        pw[s] = plain->upload(w, compute::WeightKind::kLinear).value();
        cw[s] = cpu_->upload(w, compute::WeightKind::kLinear).value();
      }
    }
    for (int64_t m : {1, 3, 16}) {
      const Tensor x = random_host({m, kK}, seed++, dt());
      const std::string what =
          std::string(int4 ? "int4" : "dense") + " gated MLP m=" + std::to_string(m);
      const Tensor f = gated_mlp(*gpu_, x, fw[0], fw[1]);
      const Tensor u = gated_mlp(*plain, x, pw[0], pw[1]);
      const Tensor c = gated_mlp(*cpu_, x, cw[0], cw[1]);
      expect_same_bits(*gpu_, f, *plain, u, what + ": fused against separate");
      expect_matches(gpu_->to_host_f32(f), cpu_->to_host_f32(c), 4 * tol(), 8 * tol(),
                     what + ": against the CPU");
      ++runs;
    }
  }
  EXPECT_EQ(runs, 6);
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
