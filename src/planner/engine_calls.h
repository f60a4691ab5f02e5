// The calls the offloading engine issues per layer of one step that the cost model counts beyond
// their bytes: a KV unit's copies by part (kv_parts) and its disk requests (the pages holding the
// rows moved, merged where they touch, as the engine's KV file issues them). Pure functions,
// thread safe. Units: positions, calls.
#pragma once

#include <cstdint>

#include "planner/model_spec.h"

namespace strata::planner {

// Parts of a KV row in its stored form: 1 for fp16, 3 for int4-g64 (codes, scales, minimums).
int kv_parts(Compression kv);

// Disk requests (keys and values together) that moving positions [begin, end) of each of `slots`
// sequences of one KV unit issues: the unit holds `slots` x `max_len` rows per part in the host
// layout (each part a [slots * max_len, row bytes] matrix after the previous part), ranges are
// widened to whole 4 KiB pages and ranges that touch are merged, as the engine's KV file does.
int64_t kv_disk_requests(const ModelSpec& spec, Compression kv, int64_t slots, int64_t max_len,
                         int64_t begin, int64_t end);

}  // namespace strata::planner
