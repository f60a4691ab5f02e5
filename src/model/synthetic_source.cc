// The synthetic WeightSource: seeded pseudo-random weights for benchmarks and tests (like
// FlexGen's dummy weights). Element i of tensor `name` is a pure function of (seed, name, i): a
// counter-based splitmix64 stream keyed by the FNV-1a hash of the canonical name. Stateless, so
// thread safe.
#include <algorithm>
#include <cmath>
#include <string_view>

#include "model/weight_source.h"

namespace strata::model {
namespace {

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The value range a weight is drawn from: U(center - half, center + half).
struct Range {
  float center;
  float half;
};

Range range_for(const WeightSpec& spec) {
  const std::string_view n = spec.name;
  if (ends_with(n, "norm.weight")) return {1.0f, 0.1f};  // norms: near 1, never all ones
  if (ends_with(n, ".bias")) return {0.0f, 0.02f};       // biases and norm shifts: small
  if (n.substr(0, 6) == "embed." && n != "embed.project_in" && n != "embed.project_out") {
    return {0.0f, 0.1f};  // token and position tables
  }
  // Linear weights [out, in]: U(-1/sqrt(in), 1/sqrt(in)) keeps activations O(1) across layers.
  int64_t in = spec.shape.empty() ? 1 : spec.shape.back();
  return {0.0f, 1.0f / std::sqrt(static_cast<float>(in < 1 ? 1 : in))};
}

class SyntheticSource final : public WeightSource {
 public:
  SyntheticSource(uint64_t seed, DType dtype) : seed_(seed), dtype_(dtype) {}

  Result<Tensor> load(const WeightSpec& spec) override {
    STRATA_RETURN_IF_ERROR(check_one(spec));
    Tensor t = Tensor::host(dtype_, spec.shape);
    const Range r = range_for(spec);
    const uint64_t stream = mix64(seed_ ^ mix64(fnv1a64(spec.name)));
    const int64_t n = t.numel();
    constexpr int64_t kChunk = 4096;
    float buf[kChunk];
    for (int64_t base = 0; base < n; base += kChunk) {
      const int64_t m = std::min(kChunk, n - base);
      for (int64_t k = 0; k < m; ++k) {
        uint64_t x = mix64(stream + uint64_t(base + k + 1) * 0x9e3779b97f4a7c15ull);
        float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        buf[k] = r.center + r.half * (2.0f * u - 1.0f);
      }
      convert_from_f32(dtype_, buf, static_cast<char*>(t.raw()) + base * dtype_size(dtype_), m);
    }
    return t;
  }

  Status check(const std::vector<WeightSpec>& specs) override {
    for (const WeightSpec& s : specs) STRATA_RETURN_IF_ERROR(check_one(s));
    return Status::ok();
  }

 private:
  static Status check_one(const WeightSpec& spec) {
    for (int64_t d : spec.shape) {
      if (d <= 0) {
        return invalid_argument("synthetic weights: '" + spec.name + "' has shape " +
                                shape_string(spec.shape) + " with a non-positive dimension");
      }
    }
    return Status::ok();
  }

  uint64_t seed_;
  DType dtype_;
};

}  // namespace

std::unique_ptr<WeightSource> make_synthetic_source(uint64_t seed, DType dtype) {
  STRATA_CHECK(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16,
               "synthetic weights are F32, F16 or BF16, not " + std::string(dtype_name(dtype)));
  return std::make_unique<SyntheticSource>(seed, dtype);
}

}  // namespace strata::model
