#include "planner/engine_calls.h"

#include <gtest/gtest.h>

#include "planner_test_util.h"

namespace strata::planner {
namespace {

using testing::spec_of;

// The KV file's layout worked by hand: each part is a [slots * max_len, row bytes] matrix, ranges
// widen to 4 KiB pages and ranges that touch merge (runtime/kv_file.cc).
TEST(EngineCalls, Fp16RowsOfSeparateSequencesAreSeparateRequests) {
  // llama-3-8b: kv_dim 1024, an fp16 row is 2 KiB. 8 sequences of 544 positions: a sequence's
  // region is 1088 KiB, so reading [0, 529) of each is 8 ranges that never touch, for k and v.
  const auto spec = spec_of("llama-3-8b");
  EXPECT_EQ(kv_disk_requests(spec, Compression::kNone, 8, 544, 0, 529), 16);
  // One new row per sequence (2 KiB, half a page): still one request per sequence.
  EXPECT_EQ(kv_disk_requests(spec, Compression::kNone, 8, 544, 528, 529), 16);
  // The whole cache: every sequence's region touches the next: one request for k, one for v.
  EXPECT_EQ(kv_disk_requests(spec, Compression::kNone, 8, 544, 0, 544), 2);
  EXPECT_EQ(kv_disk_requests(spec, Compression::kNone, 8, 544, 5, 5), 0);
}

TEST(EngineCalls, Int4ScalesOfNeighbouringSequencesShareAPage) {
  // int4-g64 rows of llama-3-8b: codes 512 B, scales 32 B, minimums 32 B. A new row (position
  // 10) of each of 4 sequences with max_len 256: code rows 128 KiB apart, scale and minimum rows
  // 8 KiB apart: every row in its own page, none touching: one request per sequence and part.
  const auto spec = spec_of("llama-3-8b");
  EXPECT_EQ(kv_disk_requests(spec, Compression::kInt4, 4, 256, 10, 11), 2 * 3 * 4);
  // With max_len 64 the scale rows are 2 KiB apart: the four fall in two touching pages, and the
  // minimums start in the page right after the last scale page, so scales and minimums are one
  // request; the codes (32 KiB apart) stay four.
  EXPECT_EQ(kv_disk_requests(spec, Compression::kInt4, 4, 64, 10, 11), 2 * (4 + 1));
  EXPECT_EQ(kv_parts(Compression::kInt4), 3);
  EXPECT_EQ(kv_parts(Compression::kNone), 1);
}

}  // namespace
}  // namespace strata::planner
