// dot(): an fp32 dot product with eight independent partial sums, so the compiler vectorises it
// without -ffast-math; the same summation order wherever it is used (the CPU backend's attention
// and the portable host-KV kernel). Pure, thread safe.
#pragma once

#include <cstdint>

namespace strata::compute {

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace strata::compute
