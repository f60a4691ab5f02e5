// The policy summary `strata plan`, `strata bench` and `strata generate` print: model and
// workload, budgets, batch shape, realised placement, the prediction with its bottleneck, and the
// seconds per layer each resource is busy. Writes to stdout (or the given stream).
#pragma once

#include <cstdio>

#include "planner/hardware.h"
#include "planner/search.h"

namespace strata::tools {

// `search_s` below 0 leaves out the line about the search (an evaluated policy file);
// `buffers` lists every buffer the runtime allocates.
void print_plan(const planner::PlanResult& r, const planner::HardwareProfile& hw, double search_s,
                bool buffers, std::FILE* out = stdout);

}  // namespace strata::tools
