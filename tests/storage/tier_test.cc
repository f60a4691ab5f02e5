#include "storage/tier.h"

#include <gtest/gtest.h>

namespace strata::storage {
namespace {

TEST(Tier, NamesRoundTrip) {
  for (Tier t : {Tier::kGpu, Tier::kCpu, Tier::kDisk}) EXPECT_EQ(tier_from_name(tier_name(t)), t);
  EXPECT_FALSE(tier_from_name("nvme").has_value());
}

}  // namespace
}  // namespace strata::storage
