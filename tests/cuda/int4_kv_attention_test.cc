// The int4-g64 KV cache on the GPU (cuda/int4_kv.h) against compute::host_kv_attention, the CPU
// attention over the same int4 layout: both start from identical cache bytes (written on the CPU
// by host_kv_append, uploaded unchanged), run decode steps of ragged batches (past lengths 0, 1
// and long ones, grouped-query heads, a sliding window, head_dim 64 to 256) and must agree on
// every output to fp16 rounding and on every cache byte after the appends (the GPU quantiser
// against the CPU's, including constant groups and zeros of both signs). A prompt step attends
// in fp16 (as the CPU reference over an fp16 cache) and is quantised into the int4 cache.
// GPU tests skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/thread_pool.h"
#include "compute/host_kv.h"
#include "compute/int4.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_test_util.h"
#include "cuda/int4_kv.h"
#include "cuda/int4_weights.h"

namespace strata::cuda {
namespace {

using compute::HostKvShape;
using compute::HostKvView;
using compute::SeqSpan;
using testing::on;
using testing::poisoned;
using testing::random_host;

// Rows of fp16 values: as a host F32 tensor (to upload) and as fp16 bit patterns (for HostKv).
struct Rows {
  Tensor host;
  std::vector<uint16_t> bits;
};

Rows make_rows(Tensor host) {
  Rows r;
  r.bits.resize(static_cast<size_t>(host.numel()));
  for (int64_t i = 0; i < host.numel(); ++i) {
    host.data<float>()[i] = f16_to_f32(f32_to_f16(host.data<float>()[i]));
    r.bits[static_cast<size_t>(i)] = f32_to_f16(host.data<float>()[i]);
  }
  r.host = std::move(host);
  return r;
}

Rows random_rows(int64_t t, int64_t heads, int64_t d, uint32_t seed, float lo = -1.0f,
                 float hi = 1.0f) {
  return make_rows(random_host({t, heads, d}, seed, DType::kF16, lo, hi));
}

// Groups the quantiser must get exactly right: a constant one (scale 0), all zeros with -0
// first, zeros of both signs as the minimum, and a wide range with tiny values.
Rows awkward(Rows r, int64_t row, int64_t e) {
  float* p = r.host.data<float>() + row * e;
  for (int64_t i = 0; i < 64; ++i) p[i] = 0.25f;
  if (e >= 128) {
    for (int64_t i = 64; i < 128; ++i) p[i] = (i % 3 == 0) ? -0.0f : 0.0f;
  }
  if (e >= 192) {
    for (int64_t i = 128; i < 192; ++i) p[i] = 0.5f + 0.01f * static_cast<float>(i % 7);
    p[130] = -0.0f;
    p[131] = 0.0f;
  }
  if (e >= 256) {
    for (int64_t i = 192; i < 256; ++i) p[i] = 1e-5f * static_cast<float>(i - 200);
    p[255] = 7.5f;
  }
  return make_rows(std::move(r.host));
}

// One fp16 unit in the last place at |x|.
double f16_ulp(double x) {
  x = std::fabs(x);
  if (x < 0x1p-14) return 0x1p-24;
  return std::ldexp(1.0, std::ilogb(x) - 10);
}

// Outputs [begin, end) (all by default) within an fp16 rounding step plus a small relative error
// of the reference, plus `floor` of the output scale: 1e-4 for the int4 kernel (fp32 throughout);
// prompt rows run the backend's tensor-core prefill kernel, which rounds P to fp16 before P.V,
// and get its own tests' tolerance (attention_test.cc), 2e-3.
constexpr double kInt4Floor = 1e-4, kPrefillFloor = 2e-3;
void expect_close(const Tensor& got, const std::vector<uint16_t>& want, const std::string& what,
                  int64_t begin = 0, int64_t end = -1, double floor = kInt4Floor) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  if (end < 0) end = got.numel();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = begin; i < end; ++i) {
    const double c = f16_to_f32(want[static_cast<size_t>(i)]);
    const double g = got.data<float>()[i];
    const double err = std::fabs(g - c);
    worst = std::max(worst, err);
    if (!(err <= f16_ulp(c) + 1e-3 * std::fabs(c) + floor)) {
      if (bad < 5) ADD_FAILURE() << what << ": output " << i << " is " << g << ", want " << c;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " outputs off, worst by " << worst;
}

void expect_same_bytes(const std::vector<std::byte>& got, const std::vector<std::byte>& want,
                       const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t diff = 0, first = got.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      if (diff++ == 0) first = i;
    }
  }
  EXPECT_EQ(diff, 0u) << what << ": " << diff << " bytes differ, the first at " << first;
}

struct Case {
  const char* name;
  int64_t hq, hkv, d;
  std::vector<int32_t> past;  // sequence i lives in slot i
  int64_t max_len;
  int64_t window;  // 0: none
  int steps;
};

class Int4KvAttention : public ::testing::Test {
 protected:
  void SetUp() override {
    STRATA_REQUIRE_GPU();
    CudaBackendOptions o;
    o.activation_dtype = DType::kF16;
    auto g = make_cuda_backend(o);
    ASSERT_TRUE(g.is_ok()) << g.status().to_string();
    gpu_ = std::move(g).value();
  }

  // The GPU cache holding exactly the bytes of the host cache.
  Int4KvCache upload(const HostKvShape& sh, const std::vector<std::byte>& k,
                     const std::vector<std::byte>& v) {
    Int4KvCache c;
    c.slots = sh.slots;
    c.max_len = sh.max_len;
    c.kv_heads = sh.kv_heads;
    c.head_dim = sh.head_dim;
    for (auto [dst, src] : {std::pair{&c.k, &k}, std::pair{&c.v, &v}}) {
      auto view = compute::int4_view(*src, {sh.slots * sh.max_len, sh.row_elems()});
      STRATA_CHECK(view.is_ok(), view.status().to_string());
      auto t = upload_int4(*gpu_, *view);
      STRATA_CHECK(t.is_ok(), t.status().to_string());
      *dst = std::move(t).value();
    }
    STRATA_CHECK(check_int4_kv_cache(c).is_ok(), "uploaded cache has the wrong form");
    return c;
  }

  std::vector<std::byte> download(const Tensor& blob) {
    auto r = download_int4(*gpu_, blob);
    STRATA_CHECK(r.is_ok(), r.status().to_string());
    return std::move(r).value();
  }

  // GPU attention of one step; returns its output on the host.
  Tensor gpu_step(const Rows& q, const Rows& k, const Rows& v, Int4KvCache& cache,
                  const std::vector<SeqSpan>& seqs, const compute::AttentionParams& p) {
    Tensor out = poisoned(*gpu_, q.host.shape());
    Status s = attention_int4_kv(*gpu_, on(*gpu_, q.host), on(*gpu_, k.host), on(*gpu_, v.host),
                                 cache, seqs, p, out);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return gpu_->to_host_f32(out);
  }

  // Decode steps (one new token per sequence) from ragged histories, GPU vs CPU.
  void run_decode(const Case& c, uint32_t seed) {
    const int64_t slots = static_cast<int64_t>(c.past.size()), e = c.hkv * c.d;
    const HostKvShape sh{slots, c.max_len, c.hkv, c.d, true};
    std::vector<std::byte> hk(sh.bytes_each()), hv(sh.bytes_each());
    const HostKvView view{sh, hk.data(), hv.data()};
    for (int64_t s = 0; s < slots; ++s) {
      const int32_t n = c.past[static_cast<size_t>(s)];
      if (n == 0) continue;
      const Rows k = random_rows(n, c.hkv, c.d, seed++, -2.0f, 2.0f);
      const Rows v = random_rows(n, c.hkv, c.d, seed++);
      compute::host_kv_append(view, s, 0, n, k.bits.data(), v.bits.data());
    }
    Int4KvCache gc = upload(sh, hk, hv);
    compute::AttentionParams p;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    if (c.window > 0) p.sliding_window = c.window;

    for (int step = 0; step < c.steps; ++step) {
      const std::string what = std::string(c.name) + " step " + std::to_string(step);
      std::vector<SeqSpan> seqs;
      // Sequences in reverse slot order, so rows and slots differ.
      for (int64_t s = slots - 1; s >= 0; --s)
        seqs.push_back({static_cast<int32_t>(s), c.past[static_cast<size_t>(s)] + step, 1,
                        static_cast<int32_t>(seqs.size())});
      const int64_t t = slots;
      const Rows q = random_rows(t, c.hq, c.d, seed++, -2.0f, 2.0f);
      Rows k = random_rows(t, c.hkv, c.d, seed++, -2.0f, 2.0f);
      Rows v = random_rows(t, c.hkv, c.d, seed++);
      if (step == 0) {
        k = awkward(std::move(k), 0, e);
        v = awkward(std::move(v), t - 1, e);
      }
      std::vector<uint16_t> want(static_cast<size_t>(t * c.hq * c.d));
      compute::host_kv_attention(pool_, view, c.hq, q.bits.data(), k.bits.data(), v.bits.data(),
                                 seqs, p, want.data());
      const Tensor got = gpu_step(q, k, v, gc, seqs, p);
      expect_close(got, want, what + " output");
      expect_same_bytes(download(gc.k), hk, what + " cache k");
      expect_same_bytes(download(gc.v), hv, what + " cache v");
    }
  }

  ThreadPool pool_{4};
  std::unique_ptr<compute::Backend> gpu_;
};

TEST_F(Int4KvAttention, OptLikeHeadDim64) {
  run_decode({"opt d64", 4, 4, 64, {0, 1, 37, 700, 64}, 720, 0, 3}, 1);
}

TEST_F(Int4KvAttention, OptLikeHeadDim128) {
  run_decode({"opt d128", 2, 2, 128, {300, 0, 1, 129, 5, 1000}, 1010, 0, 3}, 100);
}

TEST_F(Int4KvAttention, LlamaLikeGroupedQueryHeads) {
  run_decode({"llama gqa 4", 8, 2, 128, {1, 0, 513, 90, 2}, 520, 0, 3}, 200);
  run_decode({"gqa 8", 16, 2, 64, {33, 1, 0, 260}, 270, 0, 2}, 300);
  run_decode({"gqa 3 d192", 6, 2, 192, {0, 77, 1}, 90, 0, 2}, 400);
  run_decode({"gqa 4 d256", 4, 1, 256, {150, 0, 1}, 160, 0, 2}, 500);
}

TEST_F(Int4KvAttention, SlidingWindow) {
  run_decode({"window", 6, 3, 64, {0, 1, 20, 200, 49}, 210, 50, 3}, 600);
}

// A prompt batch (past_len 0, several tokens) attends in fp16 to its own keys and values, as the
// CPU over an fp16 cache; its keys and values land in the int4 cache byte for byte as
// host_kv_append's; a mixed batch's other sequences (a decode, a one-token prompt) attend to the
// int4 cache; decode steps then run over the quantised prompts, and a prompt's next chunk.
TEST_F(Int4KvAttention, PromptThenDecode) {
  const int64_t hq = 8, hkv = 2, d = 128, e = hkv * d, slots = 4, max_len = 100;
  uint32_t seed = 700;
  const HostKvShape sh{slots, max_len, hkv, d, true};
  const HostKvShape sh16{slots, max_len, hkv, d, false};
  std::vector<std::byte> hk(sh.bytes_each()), hv(sh.bytes_each());
  std::vector<std::byte> fk(sh16.bytes_each()), fv(sh16.bytes_each());
  const HostKvView view{sh, hk.data(), hv.data()};
  const HostKvView view16{sh16, fk.data(), fv.data()};
  // Slot 2 already holds 30 positions.
  {
    const Rows k = random_rows(30, hkv, d, seed++, -2.0f, 2.0f);
    const Rows v = random_rows(30, hkv, d, seed++);
    compute::host_kv_append(view, 2, 0, 30, k.bits.data(), v.bits.data());
  }
  Int4KvCache gc = upload(sh, hk, hv);
  compute::AttentionParams p;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d));

  // {slot, past_len, num_tokens, offset}: prompts of 70 and 5 tokens, a decode, a 1-token prompt.
  std::vector<SeqSpan> seqs = {{0, 0, 70, 0}, {2, 30, 1, 70}, {1, 0, 5, 71}, {3, 0, 1, 76}};
  const std::vector<SeqSpan> prompts = {seqs[0], seqs[2]};
  const int64_t t = 77;
  {
    const Rows q = random_rows(t, hq, d, seed++, -2.0f, 2.0f);
    const Rows k = awkward(random_rows(t, hkv, d, seed++, -2.0f, 2.0f), 3, e);
    const Rows v = random_rows(t, hkv, d, seed++);
    std::vector<uint16_t> want(static_cast<size_t>(t * hq * d)), want16(want.size());
    compute::host_kv_attention(pool_, view, hq, q.bits.data(), k.bits.data(), v.bits.data(),
                               seqs, p, want.data());
    compute::host_kv_attention(pool_, view16, hq, q.bits.data(), k.bits.data(), v.bits.data(),
                               prompts, p, want16.data());
    for (const SeqSpan& sp : prompts) {
      const size_t at = static_cast<size_t>(sp.offset * hq * d);
      std::copy(want16.begin() + static_cast<std::ptrdiff_t>(at),
                want16.begin() + static_cast<std::ptrdiff_t>(at + sp.num_tokens * hq * d),
                want.begin() + static_cast<std::ptrdiff_t>(at));
    }
    const Tensor got = gpu_step(q, k, v, gc, seqs, p);
    for (const SeqSpan& sp : seqs) {
      const bool prompt = sp.past_len == 0 && sp.num_tokens > 1;
      expect_close(got, want,
                   "prompt step output, sequence in slot " + std::to_string(sp.slot),
                   int64_t{sp.offset} * hq * d, int64_t{sp.offset + sp.num_tokens} * hq * d,
                   prompt ? kPrefillFloor : kInt4Floor);
    }
    expect_same_bytes(download(gc.k), hk, "prompt step cache k");
    expect_same_bytes(download(gc.v), hv, "prompt step cache v");
  }
  // A step whose every row attends to the int4 cache, against the CPU over the same cache.
  auto over_int4 = [&](const std::vector<SeqSpan>& step, const std::string& what) {
    int64_t t = 0;
    for (const SeqSpan& sp : step) t += sp.num_tokens;
    const Rows q = random_rows(t, hq, d, seed++, -2.0f, 2.0f);
    const Rows k = random_rows(t, hkv, d, seed++, -2.0f, 2.0f);
    const Rows v = random_rows(t, hkv, d, seed++);
    std::vector<uint16_t> want(static_cast<size_t>(t * hq * d));
    compute::host_kv_attention(pool_, view, hq, q.bits.data(), k.bits.data(), v.bits.data(), step,
                               p, want.data());
    const Tensor got = gpu_step(q, k, v, gc, step, p);
    expect_close(got, want, what + " output");
    expect_same_bytes(download(gc.k), hk, what + " cache k");
    expect_same_bytes(download(gc.v), hv, what + " cache v");
  };
  for (int step = 0; step < 2; ++step)
    over_int4({{0, 70 + step, 1, 0}, {1, 5 + step, 1, 1}, {2, 31 + step, 1, 2}, {3, 1 + step, 1, 3}},
              "decode step " + std::to_string(step));
  // A prompt's next chunk (6 tokens after its 7) beside a decode: each chunk row sees the rows
  // before it.
  over_int4({{1, 7, 6, 0}, {2, 33, 1, 6}}, "a prompt's next chunk beside a decode:");
}

TEST_F(Int4KvAttention, RejectsMismatchedInputs) {
  auto bad = allocate_int4_kv_cache(*gpu_, 2, 16, 2, 80);
  EXPECT_FALSE(bad.is_ok());
  auto c = allocate_int4_kv_cache(*gpu_, 2, 16, 2, 64);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_TRUE(is_int4_kv_cache(c->blobs()));
  const Rows q = random_rows(1, 4, 64, 1);
  const Rows k = random_rows(1, 4, 64, 2);  // 4 kv heads against a cache of 2
  std::vector<SeqSpan> seqs = {{0, 0, 1, 0}};
  Tensor out = poisoned(*gpu_, {1, 4, 64});
  Status s = attention_int4_kv(*gpu_, on(*gpu_, q.host), on(*gpu_, k.host), on(*gpu_, k.host), *c,
                               seqs, {}, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  Int4KvCache wrong = *c;
  wrong.max_len = 8;  // the blobs hold 16 positions per slot
  s = check_int4_kv_cache(wrong);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
}

// Runs in every build: the blob shape is the int4 weight shape of [slots * max_len, E]
// (9 words per 64 elements: 32 bytes of codes, a 2-byte scale and a 2-byte min), and only the
// cuda backend holds such a cache.
TEST(Int4KvCacheShape, IsTheBlobOfAllRows) {
  EXPECT_EQ(int4_kv_cache_shape(3, 10, 4, 64), (Shape{30, 36}));
  EXPECT_EQ(int4_kv_cache_shape(2, 5, 8, 128), (Shape{10, 144}));
  const Shape s = int4_kv_cache_shape(3, 10, 4, 128);
  EXPECT_EQ(static_cast<size_t>(s[0] * s[1] * 4), compute::int4_blob_bytes(30, 512));
  ThreadPool pool(1);
  auto cpu = compute::make_cpu_backend(pool);
  EXPECT_FALSE(allocate_int4_kv_cache(*cpu, 2, 8, 2, 64).is_ok());
}

}  // namespace
}  // namespace strata::cuda
