// The CUDA attention kernels against the CPU backend's attention: ragged prefill (the tiled
// tensor-core kernel), decode over sequences of very different lengths (the split-context decode
// kernels: tensor cores at head_dim 64 and 128, CUDA cores elsewhere), grouped-query heads,
// sliding windows, head_dim 16 to 128, and chunked prefill on top of an existing cache. The KV
// cache each backend writes is compared too. Skips without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "cuda/device.h"

namespace strata::cuda {
namespace {

using testing::CudaVsCpu;
using testing::expect_matches;
using testing::on;
using testing::poisoned;
using testing::random_host;

struct Case {
  const char* name;
  int64_t hq, hkv, d;
  std::vector<compute::SeqSpan> seqs;  // offsets are filled in
  int32_t slots, max_len;
  int64_t window;  // 0 = none
};

class CudaAttention : public CudaVsCpu {
 protected:
  void run(Case c, uint32_t seed) {
    int32_t t = 0;
    for (auto& s : c.seqs) {
      s.offset = t;
      t += s.num_tokens;
    }
    const Tensor q = random_host({t, c.hq, c.d}, seed, dt(), -2.0f, 2.0f);
    const Tensor k = random_host({t, c.hkv, c.d}, seed + 1, dt(), -2.0f, 2.0f);
    const Tensor v = random_host({t, c.hkv, c.d}, seed + 2, dt());
    // The cache starts with random "earlier" keys and values, as after previous steps.
    const Tensor ck = random_host({c.slots, c.max_len, c.hkv, c.d}, seed + 3, dt(), -2.0f, 2.0f);
    const Tensor cv = random_host({c.slots, c.max_len, c.hkv, c.d}, seed + 4, dt());
    compute::LayerKvCache gc{on(*gpu_, ck), on(*gpu_, cv)};
    compute::LayerKvCache cc{on(*cpu_, ck), on(*cpu_, cv)};
    compute::AttentionParams p;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    if (c.window > 0) p.sliding_window = c.window;
    Tensor go = poisoned(*gpu_, {t, c.hq, c.d}), co = poisoned(*cpu_, {t, c.hq, c.d});
    gpu_->attention(on(*gpu_, q), on(*gpu_, k), on(*gpu_, v), gc, c.seqs, p, go);
    cpu_->attention(on(*cpu_, q), on(*cpu_, k), on(*cpu_, v), cc, c.seqs, p, co);
    // P is rounded to the activation dtype before P·V on the tensor cores.
    const double tol = dt() == DType::kBF16 ? 1.5e-2 : 2e-3;
    expect_matches(gpu_->to_host_f32(go), cpu_->to_host_f32(co), tol, 4 * tol,
                   std::string(c.name) + " output");
    expect_matches(gpu_->to_host_f32(gc.k), cpu_->to_host_f32(cc.k), 0, 0,
                   std::string(c.name) + " cache k");
    expect_matches(gpu_->to_host_f32(gc.v), cpu_->to_host_f32(cc.v), 0, 0,
                   std::string(c.name) + " cache v");
  }
};

// {slot, past_len, num_tokens, offset}
TEST_P(CudaAttention, RaggedPrefillWithGqa) {
  for (int64_t d : {16, 64, 80, 128}) {
    run({"prefill", 8, 2, d, {{0, 0, 70, 0}, {2, 0, 5, 0}, {1, 0, 129, 0}}, 3, 140, 0},
        static_cast<uint32_t>(d));
  }
}

TEST_P(CudaAttention, ChunkedPrefillOnTopOfACache) {
  run({"chunked", 4, 4, 64, {{1, 30, 100, 0}, {0, 64, 64, 0}, {2, 7, 9, 0}}, 3, 200, 0}, 11);
}

TEST_P(CudaAttention, PrefillWithASlidingWindow) {
  run({"window", 6, 3, 32, {{0, 0, 150, 0}, {1, 40, 33, 0}}, 2, 200, 20}, 12);
}

TEST_P(CudaAttention, DecodeOverSequencesOfDifferentLengths) {
  for (int64_t d : {16, 32, 64, 80, 128}) {
    for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {8, 2}, {16, 2}}) {
      run({"decode", hq, hkv, d,
           {{0, 0, 1, 0}, {3, 1, 1, 0}, {1, 63, 1, 0}, {4, 200, 1, 0}, {2, 1500, 1, 0}},
           5, 1600, 0},
          static_cast<uint32_t>(d * 100 + hq));
    }
  }
}

TEST_P(CudaAttention, DecodeOfALongContextAloneSplitsIt) {
  run({"decode long", 32, 8, 128, {{0, 3000, 1, 0}}, 1, 3001, 0}, 21);
  run({"decode long window", 32, 8, 128, {{0, 3000, 1, 0}}, 1, 3001, 500}, 22);
}

// The same decode cases with the splits of a row merged through global memory, an arrival
// counter and the last block's pass, as on GPUs without clusters (the other tests take the
// default, attention_cluster_merge() in cuda/device.h, where a Hopper GPU merges in a
// thread-block cluster): 8 splits for the long context alone, 4 for the five sequences of
// different lengths, head_dim 64 and 128 (the tensor-core kernel's).
TEST_P(CudaAttention, DecodeSplitsMergedThroughGlobalMemoryMatchTheCpu) {
  set_attention_cluster_merge(false);
  struct Restore {
    ~Restore() { set_attention_cluster_merge(true); }
  } restore;
  for (int64_t d : {64, 128}) {
    for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {16, 2}}) {
      run({"decode through global memory",
           hq,
           hkv,
           d,
           {{0, 0, 1, 0}, {3, 1, 1, 0}, {1, 63, 1, 0}, {4, 200, 1, 0}, {2, 1500, 1, 0}},
           5,
           1600,
           0},
          static_cast<uint32_t>(d * 1000 + hq));
    }
  }
  run({"decode long through global memory", 32, 8, 128, {{0, 3000, 1, 0}}, 1, 3001, 0}, 23);
  run({"decode long window through global memory", 32, 8, 128, {{0, 3000, 1, 0}}, 1, 3001, 500},
      24);
}

TEST_P(CudaAttention, FewNewTokensPerSequenceUseTheDecodeKernel) {
  run({"speculative-sized", 8, 2, 64, {{0, 10, 3, 0}, {1, 0, 2, 0}, {2, 300, 4, 0}}, 3, 310, 0},
      31);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaAttention, ::testing::Values(DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace strata::cuda
