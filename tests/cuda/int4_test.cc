// int4-g64 weights on the CUDA backend: the GPU quantiser against the reference quantiser (byte
// for byte), upload/download, linear() with int4 weights against the CPU backend running the
// reference dequantiser's weights (skinny GEMV, several products sharing x, the fused ReLU, and
// the dequantise-then-cuBLAS path), and a fixture model whose layer weights are int4 against the
// CPU running `strata convert --compress int4-g64`'s round trip. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "compute/int4.h"
#include "compute/transformer.h"
#include "cuda/cuda_test_util.h"
#include "cuda/int4_weights.h"
#include "model/model_dir.h"
#include "model/weight_names.h"
#include "runtime/convert.h"
#include "testing/test_data.h"

namespace strata::cuda {
namespace {

using testing::CudaVsCpu;
using testing::expect_matches;
using testing::on;
using testing::poisoned;
using testing::random_host;
using testing::vec_on;

using CudaInt4 = CudaVsCpu;

std::vector<std::byte> host_blob(const Tensor& w) {
  std::vector<std::byte> blob(compute::int4_blob_bytes(w.dim(0), w.dim(1)));
  Status s = compute::quantise_int4(w, blob);
  STRATA_CHECK(s.is_ok(), s.to_string());
  return blob;
}

// Host weight with a few awkward groups: a constant group (scale 0), zeros of both signs.
Tensor awkward_weight(int64_t n, int64_t k, uint32_t seed, DType dt) {
  Tensor w = random_host({n, k}, seed, dt, -0.2f, 0.3f);
  float* p = w.data<float>();
  for (int64_t i = 0; i < 64; ++i) p[i] = 0.125f;  // row 0, group 0: constant
  if (n > 1) {
    p[k + 0] = 0.0f;
    p[k + 1] = -0.0f;
  }
  return w;
}

TEST_P(CudaInt4, GpuQuantiserMatchesTheReferenceByteForByte) {
  const std::pair<int64_t, int64_t> shapes[] = {{1, 64}, {3, 128}, {257, 512}, {64, 4096}};
  uint32_t seed = 1;
  for (auto [n, k] : shapes) {
    const Tensor w = awkward_weight(n, k, seed++, dt());
    const std::vector<std::byte> want = host_blob(w);
    // From a device weight in the activation dtype, and from an F32 device tensor.
    for (bool f32 : {false, true}) {
      Tensor dev = f32 ? vec_on(*gpu_, w) : on(*gpu_, w);
      auto q = quantise_int4_on_device(*gpu_, dev);
      ASSERT_TRUE(q.is_ok()) << q.status().to_string();
      EXPECT_TRUE(is_int4_weight(*q));
      EXPECT_EQ(q->shape(), int4_weight_shape(n, k));
      EXPECT_EQ(int4_weight_cols(*q), k);
      EXPECT_EQ(q->bytes(), want.size());
      auto got = download_int4(*gpu_, *q);
      ASSERT_TRUE(got.is_ok()) << got.status().to_string();
      ASSERT_EQ(got->size(), want.size());
      EXPECT_EQ(std::memcmp(got->data(), want.data(), want.size()), 0)
          << n << "x" << k << (f32 ? " from F32" : " from the activation dtype");
    }
  }
}

TEST_P(CudaInt4, BadInputsAreErrors) {
  Tensor odd = on(*gpu_, random_host({4, 96}, 5, dt()));
  EXPECT_EQ(quantise_int4_on_device(*gpu_, odd).status().code(), StatusCode::kInvalidArgument);
  Tensor w = random_host({2, 64}, 6, dt());
  w.data<float>()[70] = INFINITY;
  auto r = quantise_int4_on_device(*gpu_, vec_on(*gpu_, w));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("non-finite"), std::string::npos) << r.status().message();
  EXPECT_FALSE(quantise_int4_on_device(*cpu_, w).is_ok());
}

TEST_P(CudaInt4, UploadAndDownloadKeepTheBlob) {
  const Tensor w = random_host({33, 192}, 7, DType::kF32);
  const std::vector<std::byte> blob = host_blob(w);
  auto view = compute::int4_view(blob, w.shape());
  ASSERT_TRUE(view.is_ok());
  auto dev = upload_int4(*gpu_, *view);
  ASSERT_TRUE(dev.is_ok()) << dev.status().to_string();
  auto back = download_int4(*gpu_, *dev);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, blob);
}

struct Shape3 {
  int64_t m, n, k;
};

// y = x · dequant(w)^T (+ bias) on the GPU against the CPU backend with the reference values.
TEST_P(CudaInt4, LinearMatchesTheReferenceDequantiser) {
  const Shape3 shapes[] = {{1, 64, 64},    {1, 4500, 512}, {3, 200, 1024}, {8, 1000, 4096},
                           {9, 130, 256},  {64, 384, 512}, {5, 17, 14336}};
  uint32_t seed = 10;
  for (const auto& s : shapes) {
    for (bool with_bias : {false, true}) {
      const Tensor x = random_host({s.m, s.k}, seed++, dt());
      const Tensor w = random_host({s.n, s.k}, seed++, DType::kF32, -0.1f, 0.1f);
      const Tensor b = random_host({s.n}, seed++, dt());
      const std::vector<std::byte> blob = host_blob(w);
      Tensor gw = upload_int4(*gpu_, compute::int4_view(blob, w.shape()).value()).value();
      Tensor cw = cpu_->upload(compute::dequantise_int4(compute::int4_view(blob, w.shape()).value()),
                               compute::WeightKind::kLinear).value();
      Tensor gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
      Tensor gy = poisoned(*gpu_, {s.m, s.n}), cy = poisoned(*cpu_, {s.m, s.n});
      gpu_->linear(on(*gpu_, x), gw, with_bias ? &gb : nullptr, gy);
      cpu_->linear(on(*cpu_, x), cw, with_bias ? &cb : nullptr, cy);
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), 2 * tol(), 4 * tol(),
                     "int4 linear " + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                         std::to_string(s.k) + (with_bias ? " +bias" : ""));
    }
  }
}

// Every decode batch size the skinny GEMV specialises (1 to 8 rows, the odd ones run by the next
// larger kernel), on row counts that leave part of a block empty and on k whose chunks do not fill
// the lanes' last pipeline step; with a bias, and as three products sharing x.
TEST_P(CudaInt4, SkinnyLinearCoversEveryBatchSize) {
  const std::pair<int64_t, int64_t> shapes[] = {{301, 576}, {37, 4160}};
  uint32_t seed = 900;
  for (int64_t m = 1; m <= 8; ++m) {
    for (auto [n, k] : shapes) {
      const Tensor x = random_host({m, k}, seed++, dt());
      const Tensor b = random_host({n}, seed++, dt());
      Tensor gx = on(*gpu_, x), cx = on(*cpu_, x), gb = vec_on(*gpu_, b), cb = vec_on(*cpu_, b);
      Tensor gws[3], cws[3], gys[3], cys[3];
      for (int i = 0; i < 3; ++i) {
        const Tensor w = random_host({n + i, k}, seed++, DType::kF32, -0.1f, 0.1f);
        const std::vector<std::byte> blob = host_blob(w);
        gws[i] = upload_int4(*gpu_, compute::int4_view(blob, w.shape()).value()).value();
        cws[i] = cpu_->upload(compute::dequantise_int4(compute::int4_view(blob, w.shape()).value()),
                              compute::WeightKind::kLinear).value();
        gys[i] = poisoned(*gpu_, {m, n + i});
        cys[i] = poisoned(*cpu_, {m, n + i});
      }
      // One product with a bias on its own, then three sharing x in one launch.
      gpu_->linear(gx, gws[0], &gb, gys[0]);
      cpu_->linear(cx, cws[0], &cb, cys[0]);
      const std::string what = "int4 skinny " + std::to_string(m) + "x" + std::to_string(n) +
                               "x" + std::to_string(k);
      expect_matches(gpu_->to_host_f32(gys[0]), cpu_->to_host_f32(cys[0]), 2 * tol(), 4 * tol(),
                     what + " +bias");
      for (int i = 0; i < 3; ++i) {
        gpu_->linear(gx, gws[i], nullptr, gys[i]);
        cpu_->linear(cx, cws[i], nullptr, cys[i]);
      }
      for (int i = 0; i < 3; ++i)
        expect_matches(gpu_->to_host_f32(gys[i]), cpu_->to_host_f32(cys[i]), 2 * tol(), 4 * tol(),
                       what + " shared x, product " + std::to_string(i));
    }
  }
}

// Three products sharing x (one launch on the GPU), then a ReLU that joins a held product, for
// int4 and dense weights, skinny and cuBLAS-sized batches.
TEST_P(CudaInt4, SharedInputProductsAndFusedRelu) {
  uint32_t seed = 500;
  for (int64_t m : {2, 40}) {
    for (bool int4 : {false, true}) {
      const int64_t k = 256, ns[3] = {512, 128, 128};
      const Tensor x = random_host({m, k}, seed++, dt());
      Tensor gx = on(*gpu_, x), cx = on(*cpu_, x);
      Tensor gys[3], cys[3], gws[3], cws[3], gbs[3], cbs[3];
      for (int i = 0; i < 3; ++i) {
        Tensor w = random_host({ns[i], k}, seed++, dt(), -0.1f, 0.1f);
        const Tensor b = random_host({ns[i]}, seed++, dt());
        if (int4) {
          const std::vector<std::byte> blob = host_blob(w);
          gws[i] = upload_int4(*gpu_, compute::int4_view(blob, w.shape()).value()).value();
          w = compute::dequantise_int4(compute::int4_view(blob, w.shape()).value());
        } else {
          gws[i] = gpu_->upload(w, compute::WeightKind::kLinear).value();
        }
        cws[i] = cpu_->upload(w, compute::WeightKind::kLinear).value();
        gbs[i] = vec_on(*gpu_, b);
        cbs[i] = vec_on(*cpu_, b);
        gys[i] = poisoned(*gpu_, {m, ns[i]});
        cys[i] = poisoned(*cpu_, {m, ns[i]});
      }
      for (int i = 0; i < 3; ++i) {
        gpu_->linear(gx, gws[i], i == 1 ? nullptr : &gbs[i], gys[i]);
        cpu_->linear(cx, cws[i], i == 1 ? nullptr : &cbs[i], cys[i]);
      }
      const std::string what = std::string(int4 ? "int4" : "dense") + " m=" + std::to_string(m);
      for (int i = 0; i < 3; ++i)
        expect_matches(gpu_->to_host_f32(gys[i]), cpu_->to_host_f32(cys[i]), 2 * tol(), 4 * tol(),
                       what + " product " + std::to_string(i));
      // fc1 then ReLU, as OPT's MLP runs it.
      Tensor gy = poisoned(*gpu_, {m, ns[0]}), cy = poisoned(*cpu_, {m, ns[0]});
      gpu_->linear(gx, gws[0], &gbs[0], gy);
      gpu_->relu(gy);
      cpu_->linear(cx, cws[0], &cbs[0], cy);
      cpu_->relu(cy);
      expect_matches(gpu_->to_host_f32(gy), cpu_->to_host_f32(cy), 2 * tol(), 4 * tol(),
                     what + " bias + relu");
    }
  }
}

// A residual add followed by the norm of its output runs as one kernel on the GPU.
TEST_P(CudaInt4, ResidualAddThenNormMatchesTheUnfusedPair) {
  uint32_t seed = 700;
  for (auto [t, c] : {std::pair<int64_t, int64_t>{1, 4096}, {7, 257}, {3, 12288}}) {
    const Tensor a = random_host({t, c}, seed++, dt(), -2.0f, 2.0f);
    const Tensor b = random_host({t, c}, seed++, dt(), -2.0f, 2.0f);
    const Tensor g = random_host({c}, seed++, dt(), 0.5f, 1.5f);
    const Tensor be = random_host({c}, seed++, dt());
    const std::string shape = std::to_string(t) + "x" + std::to_string(c);
    for (int kind = 0; kind < 3; ++kind) {  // rms_norm, layer_norm, layer_norm in place
      Tensor ga = on(*gpu_, a), ca = on(*cpu_, a);
      Tensor gh = poisoned(*gpu_, {t, c}), ch = poisoned(*cpu_, {t, c});
      Tensor gg = vec_on(*gpu_, g), cg = vec_on(*cpu_, g), gb = vec_on(*gpu_, be), cb = vec_on(*cpu_, be);
      gpu_->add(ga, on(*gpu_, b), ga);
      cpu_->add(ca, on(*cpu_, b), ca);
      if (kind == 0) {
        gpu_->rms_norm(ga, gg, 1e-5f, gh);
        cpu_->rms_norm(ca, cg, 1e-5f, ch);
      } else if (kind == 1) {
        gpu_->layer_norm(ga, &gg, &gb, 1e-5f, gh);
        cpu_->layer_norm(ca, &cg, &cb, 1e-5f, ch);
      } else {
        gpu_->layer_norm(ga, &gg, &gb, 1e-5f, ga);
        cpu_->layer_norm(ca, &cg, &cb, 1e-5f, ca);
      }
      const std::string what = shape + " kind " + std::to_string(kind);
      if (kind < 2)
        expect_matches(gpu_->to_host_f32(gh), cpu_->to_host_f32(ch), tol(), 2 * tol(), "norm " + what);
      expect_matches(gpu_->to_host_f32(ga), cpu_->to_host_f32(ca), tol(), 2 * tol(), "sum " + what);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaInt4, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A fixture model whose layer weights are int4-g64 on the GPU (quantised by the reference
// quantiser, uploaded as blobs) against the CPU backend running what `strata convert --compress
// int4-g64` yields: prompt logits must agree as closely as the dense model's do.
// The fixture's weights on `gpu`: int4-g64 where runtime::int4_applies() if `int4`.
compute::ModelWeights gpu_weights(compute::Backend& gpu, const model::ModelFiles& files,
                                  bool int4) {
  const model::ModelConfig& config = files.config;
  compute::ModelWeights gw;
  for (const auto& spec : model::model_weights(config)) {
    Tensor host = files.weights->load(spec).value();
    const bool table = spec.name == "embed.tokens" || spec.name == "embed.positions";
    if (int4 && runtime::int4_applies(spec)) {
      const std::vector<std::byte> blob = host_blob(host);
      gw.put(spec.name, upload_int4(gpu, compute::int4_view(blob, host.shape()).value()).value());
      continue;
    }
    const auto kind = table ? compute::WeightKind::kTable
                      : host.rank() == 2 ? compute::WeightKind::kLinear
                                         : compute::WeightKind::kVector;
    gw.put(spec.name, gpu.upload(host, kind).value());
    if (spec.name == "embed.tokens" && config.tie_word_embeddings)
      gw.put("lm_head.weight", gpu.upload(host, compute::WeightKind::kLinear).value());
  }
  return gw;
}

TEST(CudaInt4Model, LlamaWithInt4LayersMatchesTheCpuRoundTrip) {
  STRATA_REQUIRE_GPU();
  const auto dir = strata::testing::test_data_dir() / "fixtures" / "llama_gqa_llama3";
  auto files = model::open_model_dir(dir);
  ASSERT_TRUE(files.is_ok()) << files.status().to_string();
  const model::ModelConfig config = files->config;
  auto gpu = make_cuda_backend({}).value();
  compute::Transformer gpu_model(config, *gpu, gpu_weights(*gpu, *files, true));

  ThreadPool pool(4);
  auto cpu = compute::make_cpu_backend(pool);
  auto src = runtime::make_int4_roundtrip_source(model::open_model_dir(dir).value().weights);
  auto cw = compute::load_weights(config, *src, *cpu);
  ASSERT_TRUE(cw.is_ok()) << cw.status().to_string();
  compute::Transformer cpu_model(config, *cpu, std::move(cw).value());

  const std::vector<int32_t> prompt = {1, 5, 9, 150, 17, 3, 3, 64, 101, 7};
  std::vector<int32_t> rows(prompt.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>(i);
  compute::TokenBatch batch;
  batch.add_sequence(0, 0, prompt);
  auto gc = gpu_model.make_kv_cache(1, 16).value();
  auto cc = cpu_model.make_kv_cache(1, 16).value();
  Tensor gl = gpu_model.forward(batch, gc, rows).value();
  Tensor cl = cpu_model.forward(batch, cc, rows).value();
  const auto e = testing::compare(gl, cl);
  EXPECT_TRUE(e.finite);
  EXPECT_LE(e.max_abs / std::max(1.0, e.max_ref), 1e-2) << "max |logit| " << e.max_ref;
  // Decode steps through the int4 GEMV agree too.
  for (int step = 0; step < 4; ++step) {
    const int32_t tok = 11 + step, row = 0;
    compute::TokenBatch d;
    d.add_sequence(0, static_cast<int32_t>(prompt.size()) + step, {&tok, 1});
    Tensor g = gpu_model.forward(d, gc, {&row, 1}).value();
    Tensor c = cpu_model.forward(d, cc, {&row, 1}).value();
    const auto de = testing::compare(g, c);
    EXPECT_LE(de.max_abs / std::max(1.0, de.max_ref), 1e-2) << "decode step " << step;
  }
}

// Prompts of `seqs` sequences, then 4 decode steps of all of them: every logit, in order.
std::vector<float> prompt_then_decode(compute::Transformer& model, int seqs) {
  auto cache = model.make_kv_cache(seqs, 32).value();
  compute::TokenBatch batch;
  std::vector<int32_t> rows;
  for (int s = 0; s < seqs; ++s) {
    const std::vector<int32_t> prompt = {1, 5 + s, 9, 150, 17, 3, 64 + s, 101};
    batch.add_sequence(s, 0, prompt);
    rows.push_back(batch.size() - 1);
  }
  std::vector<float> out;
  for (int step = 0; step <= 4; ++step) {
    Tensor l = model.forward(batch, cache, rows).value();
    out.insert(out.end(), l.data<float>(), l.data<float>() + l.numel());
    batch = {};
    rows.clear();
    for (int s = 0; s < seqs; ++s) {
      const int32_t tok = 11 + step + s;
      batch.add_sequence(s, 8 + step, {&tok, 1});
      rows.push_back(s);
    }
  }
  return out;
}

// Kernels that start while the one before finishes (cuda/chain.cuh) compute the same bits as
// kernels that start after it: dense and int4 layers, one sequence (the CUDA-core GEMVs) and
// three (the tensor-core ones).
TEST(CudaInt4Model, ChainedLaunchesGiveTheSameBits) {
  STRATA_REQUIRE_GPU();
  const auto dir = strata::testing::test_data_dir() / "fixtures" / "llama_gqa_llama3";
  auto files = model::open_model_dir(dir);
  ASSERT_TRUE(files.is_ok()) << files.status().to_string();
  auto gpu = make_cuda_backend({}).value();
  for (bool int4 : {false, true}) {
    compute::Transformer model(files->config, *gpu, gpu_weights(*gpu, *files, int4));
    for (int seqs : {1, 3}) {
      set_chained_launches(false);
      const std::vector<float> plain = prompt_then_decode(model, seqs);
      set_chained_launches(true);
      const std::vector<float> chained = prompt_then_decode(model, seqs);
      ASSERT_EQ(plain.size(), chained.size());
      EXPECT_EQ(0, std::memcmp(plain.data(), chained.data(), plain.size() * sizeof(float)))
          << (int4 ? "int4" : "dense") << " layers, " << seqs << " sequences";
    }
  }
}

}  // namespace
}  // namespace strata::cuda
