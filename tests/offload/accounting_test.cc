// The engine report's summary lines, as `strata generate` prints them.
#include "offload/accounting.h"

#include <gtest/gtest.h>

#include "common/units.h"

namespace strata::offload {
namespace {

TEST(OffloadReport, LinesForTheJobSummary) {
  OffloadReport rep;
  rep.prefill_s = 1;
  rep.decode_s = 3;
  rep.resources = {{"h2d", 2.0, 4 * kGiB}};
  rep.pinned_bytes = kGiB;
  const std::string text = format_offload_report(rep);
  EXPECT_NE(text.find("h2d 4.00 GiB, busy 50%"), std::string::npos) << text;  // 2 s of 4
  EXPECT_NE(text.find("pinned 1.00 GiB"), std::string::npos) << text;
}

}  // namespace
}  // namespace strata::offload
