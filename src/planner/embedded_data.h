// The JSON text of policies/hardware/*.json and policies/capacity/*.json, embedded at build time
// (see CMakeLists.txt and embedded_data.cc.in). Internal to the planner; use hardware.h.
#pragma once

#include <span>

namespace strata::planner::detail {

struct EmbeddedFile {
  const char* path;  // relative to policies/, e.g. "hardware/l4.json"
  const char* text;
};

std::span<const EmbeddedFile> embedded_files();

}  // namespace strata::planner::detail
