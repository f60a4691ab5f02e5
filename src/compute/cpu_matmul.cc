#include "compute/cpu_matmul.h"

#include <list>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/check.h"

namespace strata::compute {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// Primitive cache policy: one primitive per exact (M, N, K, dtype, has_bias), kept in a small LRU.
//
// We chose exact M over a runtime M (DNNL_RUNTIME_DIM_VAL) after measuring both on the AVX-512
// machine this was written on (K = N = 1024): with a runtime M oneDNN 2.6 falls back to its
// gemm:jit implementation, which ran f32 at M = 64 about 3x slower (~65 vs ~190 GFLOP/s) than the
// brgemm kernel it picks for a fixed M. A fixed-M primitive costs ~0.3 ms to create, and it is
// reused: within one forward step every layer calls linear() with the same M, so a step creates
// at most one primitive per distinct (N, K) and reuses it num_layers times. The LRU bound keeps
// memory flat when ragged prefills produce many different M over a long run.
constexpr size_t kCacheCapacity = 64;

struct Key {
  int64_t m, n, k;
  DType dtype;
  bool has_bias;
  bool operator==(const Key&) const = default;
};

struct Entry {
  Key key;
  dnnl::matmul prim;
  dnnl::memory::desc src, wei, bias, dst;
};

dt dnnl_type(DType t) { return t == DType::kBF16 ? dt::bf16 : dt::f32; }

// Describes y[m, n] = x[m, k] · w[n, k]^T: oneDNN's weights are [k, n], so w is read as the
// transposed ("ba") layout of a [k, n] matrix, with no copy.
Entry make_entry(const dnnl::engine& eng, const Key& key) {
  dt in = dnnl_type(key.dtype);
  Entry e{key, {}, {}, {}, {}, {}};
  e.src = dnnl::memory::desc({key.m, key.k}, in, tag::ab);
  e.wei = dnnl::memory::desc({key.k, key.n}, in, tag::ba);
  e.dst = dnnl::memory::desc({key.m, key.n}, dt::f32, tag::ab);
  if (key.has_bias) e.bias = dnnl::memory::desc({1, key.n}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd =
      key.has_bias
          ? dnnl::matmul::primitive_desc(dnnl::matmul::desc(e.src, e.wei, e.bias, e.dst), eng)
          : dnnl::matmul::primitive_desc(dnnl::matmul::desc(e.src, e.wei, e.dst), eng);
  e.prim = dnnl::matmul(pd);
  return e;
}

}  // namespace

struct CpuMatmul::Impl {
  dnnl::engine engine;
  dnnl::stream stream;
  bool bf16 = false;
  std::list<Entry> cache;  // most recently used first

  Entry& lookup(const Key& key) {
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (it->key == key) {
        cache.splice(cache.begin(), cache, it);
        return cache.front();
      }
    }
    cache.push_front(make_entry(engine, key));
    if (cache.size() > kCacheCapacity) cache.pop_back();
    return cache.front();
  }
};

// Probes for a usable bf16 matmul: creation fails (dnnl::error) on CPUs without bf16 support, and
// a reference ("ref:") implementation would be far slower than widening the weights to f32.
static bool probe_bf16(const dnnl::engine& eng) {
  try {
    dnnl::memory::desc src({16, 64}, dt::bf16, tag::ab);
    dnnl::memory::desc wei({64, 64}, dt::bf16, tag::ba);
    dnnl::memory::desc bias({1, 64}, dt::f32, tag::ab);
    dnnl::memory::desc dst({16, 64}, dt::f32, tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, bias, dst), eng);
    return std::string_view(pd.impl_info_str()).substr(0, 3) != "ref";
  } catch (const dnnl::error&) {
    return false;
  }
}

CpuMatmul::CpuMatmul(bool allow_bf16) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    impl_->stream = dnnl::stream(impl_->engine);
  } catch (const dnnl::error& e) {
    STRATA_CHECK(false, std::string("oneDNN: cannot create the CPU engine: ") + e.what());
  }
  impl_->bf16 = allow_bf16 && probe_bf16(impl_->engine);
}

CpuMatmul::~CpuMatmul() = default;

bool CpuMatmul::bf16_supported() const { return impl_->bf16; }

size_t CpuMatmul::cached_primitives() const { return impl_->cache.size(); }

void CpuMatmul::run(const void* x, const void* w, DType w_dtype, const float* bias, float* y,
                    int64_t m, int64_t n, int64_t k) {
  STRATA_CHECK(w_dtype == DType::kF32 || (w_dtype == DType::kBF16 && impl_->bf16),
               "CpuMatmul: unsupported weight dtype " + std::string(dtype_name(w_dtype)));
  if (m == 0 || n == 0) return;
  try {
    Entry& e = impl_->lookup(Key{m, n, k, w_dtype, bias != nullptr});
    const dnnl::engine& eng = impl_->engine;
    // oneDNN's memory wraps user pointers as void*; it does not write to src, weights or bias.
    dnnl::memory src(e.src, eng, const_cast<void*>(x));
    dnnl::memory wei(e.wei, eng, const_cast<void*>(w));
    dnnl::memory dst(e.dst, eng, y);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    if (bias != nullptr) {
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias, eng, const_cast<float*>(bias)));
    }
    e.prim.execute(impl_->stream, args);
    impl_->stream.wait();
  } catch (const dnnl::error& err) {
    STRATA_CHECK(false, "oneDNN matmul [" + std::to_string(m) + ", " + std::to_string(k) + "] x [" +
                            std::to_string(n) + ", " + std::to_string(k) + "]^T " +
                            std::string(dtype_name(w_dtype)) + " failed: " + err.what());
  }
}

}  // namespace strata::compute
