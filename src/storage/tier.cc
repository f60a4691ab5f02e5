#include "storage/tier.h"

namespace strata::storage {

std::string_view tier_name(Tier t) {
  switch (t) {
    case Tier::kGpu: return "gpu";
    case Tier::kCpu: return "cpu";
    case Tier::kDisk: return "disk";
  }
  return "?";
}

std::optional<Tier> tier_from_name(std::string_view name) {
  if (name == "gpu") return Tier::kGpu;
  if (name == "cpu") return Tier::kCpu;
  if (name == "disk") return Tier::kDisk;
  return std::nullopt;
}

}  // namespace strata::storage
