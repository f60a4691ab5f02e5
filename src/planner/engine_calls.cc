#include "planner/engine_calls.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/check.h"

namespace strata::planner {

namespace {

constexpr uint64_t kPage = 4096;  // the engine's O_DIRECT alignment

}  // namespace

int kv_parts(Compression kv) { return kv == Compression::kInt4 ? 3 : 1; }

int64_t kv_disk_requests(const ModelSpec& spec, Compression kv, int64_t slots, int64_t max_len,
                         int64_t begin, int64_t end) {
  STRATA_CHECK(slots > 0 && max_len > 0 && 0 <= begin && begin <= end && end <= max_len,
               "kv_disk_requests: positions outside the cache");
  if (begin == end) return 0;
  const uint64_t E = static_cast<uint64_t>(spec.kv_dim);
  const uint64_t rows = static_cast<uint64_t>(slots * max_len);
  // (offset of the part, bytes per row)
  std::vector<std::pair<uint64_t, uint64_t>> parts;
  if (kv == Compression::kInt4) {
    const uint64_t groups = E / 64;
    parts = {{0, E / 2}, {rows * E / 2, groups * 2}, {rows * E / 2 + rows * groups * 2, groups * 2}};
  } else {
    parts = {{0, E * 2}};
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (int64_t s = 0; s < slots; ++s) {
    const uint64_t r0 = static_cast<uint64_t>(s * max_len + begin), r1 = static_cast<uint64_t>(s * max_len + end);
    for (const auto& [offset, row] : parts) {
      const uint64_t b = (offset + r0 * row) / kPage * kPage;
      const uint64_t e = (offset + r1 * row + kPage - 1) / kPage * kPage;
      ranges.emplace_back(b, e);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  int64_t merged = 0;
  uint64_t reach = 0;
  for (const auto& [b, e] : ranges) {
    if (merged == 0 || b > reach) {
      ++merged;
      reach = e;
    } else {
      reach = std::max(reach, e);
    }
  }
  return 2 * merged;  // keys and values
}

}  // namespace strata::planner
