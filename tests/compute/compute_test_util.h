// Helpers for the CPU backend tests: random host tensors, element access, and comparison against
// double-precision references written in the tests. Test-only; not thread safe.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "common/thread_pool.h"
#include "compute/backend.h"

namespace strata::compute::testing {

// Host F32 tensor with values uniform in [lo, hi), deterministic for a seed.
inline Tensor random_tensor(Shape shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::host(DType::kF32, std::move(shape));
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(gen);
  return t;
}

inline Tensor tensor_from(Shape shape, const std::vector<float>& values) {
  Tensor t = Tensor::host(DType::kF32, std::move(shape));
  EXPECT_EQ(static_cast<size_t>(t.numel()), values.size());
  for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = values[i];
  return t;
}

inline std::vector<float> values_of(const Tensor& t) {
  Tensor f = to_f32(t);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

// Expects |actual[i] - expected[i]| <= abs_tol + rel_tol * |expected[i]| for every i.
inline void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                         double rel_tol, double abs_tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double err = std::abs(static_cast<double>(actual[i]) - expected[i]);
    if (!(err <= abs_tol + rel_tol * std::abs(expected[i])) && reported++ < 5) {
      ADD_FAILURE() << what << ": element " << i << " is " << actual[i] << ", expected "
                    << expected[i] << " (error " << err << ")";
    }
  }
}

// A backend on a small pool of its own, so tests exercise the threaded paths.
class BackendTest : public ::testing::Test {
 protected:
  BackendTest() : pool_(4), backend_(make_cpu_backend(pool_)) {}

  Tensor alloc(Shape shape) {
    auto r = backend_->allocate(DType::kF32, std::move(shape));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return std::move(r).value();
  }
  Tensor upload(const Tensor& host, WeightKind kind) {
    auto r = backend_->upload(host, kind);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return std::move(r).value();
  }

  ThreadPool pool_;
  std::unique_ptr<Backend> backend_;
};

}  // namespace strata::compute::testing
