// The policy summary `strata plan`, `strata bench` and `strata generate` print: model and
// workload, budgets, batch shape, realised placement, the prediction with its bottleneck, and the
// seconds per layer each resource is busy; and `strata plan --policy`'s comparison of a given
// policy with the planner's choice. Writes to stdout (or the given stream).
#pragma once

#include <cstdio>
#include <vector>

#include "planner/hardware.h"
#include "planner/search.h"

namespace strata::tools {

// `search_s` below 0 leaves out the line about the search (an evaluated policy file);
// `buffers` lists every buffer the runtime allocates.
void print_plan(const planner::PlanResult& r, const planner::HardwareProfile& hw, double search_s,
                bool buffers, std::FILE* out = stdout);

// The planner's runners-up, one line each: rank, batch shape, compression and attention, the
// realised placement fractions, predicted tokens/s and bottleneck.
void print_runners_up(const std::vector<planner::Policy>& policies, std::FILE* out = stdout);

// Two policies side by side under the same profile and budgets: batch, placement, predicted
// tokens/s, prefill, decode step, bottleneck, memory per tier, and the seconds per layer each
// resource is busy in each phase.
void print_comparison(const planner::PlanResult& given, const std::string& given_label,
                      const planner::PlanResult& planned, const planner::HardwareProfile& hw,
                      std::FILE* out = stdout);

}  // namespace strata::tools
