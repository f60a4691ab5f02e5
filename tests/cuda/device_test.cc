#include "cuda/device.h"

#include <gtest/gtest.h>

namespace strata::cuda {
namespace {

TEST(Device, QueryNeverFailsAndExplainsAnEmptyList) {
  DeviceQuery q = query_devices();
#ifdef STRATA_HAVE_CUDA
  EXPECT_TRUE(q.built_with_cuda);
#else
  EXPECT_FALSE(q.built_with_cuda);
#endif
  if (q.devices.empty()) {
    EXPECT_FALSE(q.note.empty());
    GTEST_SKIP() << "no CUDA device: " << q.note;
  }
  for (const auto& d : q.devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_memory, 0u);
    EXPECT_LE(d.free_memory, d.total_memory);
    EXPECT_GE(d.compute_major, 5);
    EXPECT_EQ(d.uuid.size(), 40u) << d.uuid;  // "GPU-" + 32 hex digits + 4 dashes
    EXPECT_EQ(d.uuid.rfind("GPU-", 0), 0u) << d.uuid;
  }
}

}  // namespace
}  // namespace strata::cuda
