// The memory tiers strata places data in, from fastest to largest. Pure, thread safe.
#pragma once

#include <optional>
#include <string_view>

namespace strata::storage {

enum class Tier { kGpu, kCpu, kDisk };

std::string_view tier_name(Tier t);                       // "gpu", "cpu", "disk"
std::optional<Tier> tier_from_name(std::string_view name);

}  // namespace strata::storage
