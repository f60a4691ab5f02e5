// The cache of measured hardware profiles, one file per machine: a profile is reused only on the
// machine it was measured on, named by MachineKey (the GPU's UUID and name, the CPU model, the
// offload directory's device). Files live in profile_cache_dir(); each holds the profile's JSON
// (hardware_profile_to_json, with its `machine`) plus the cache's format version and the mode it
// was measured in. Stores are atomic (a temporary file renamed into place), so a reader sees a
// whole file or none. Functions are thread safe as the filesystem is.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "planner/hardware.h"

namespace strata::tools {

using MachineKey = planner::MachineId;

// The version of the cache files this strata reads and writes. A file of an older version reads as
// no cached profile (it lacks figures this strata uses: measure again); of a newer one, an error.
// 2: the CPU attention fixed cost includes the engine's cost per call.
inline constexpr int kProfileCacheFormat = 2;

// This machine's key: CUDA device `device`'s UUID and name (empty without one), the CPU model from
// /proc/cpuinfo, and the device of `offload_dir` (kNotFound when it cannot be stat'ed).
Result<MachineKey> machine_key(const std::filesystem::path& offload_dir, int device);
// The first "model name" of /proc/cpuinfo's text (else "Hardware", "cpu model" or "Processor",
// as other architectures spell it), or "unknown CPU".
std::string cpu_model_from_cpuinfo(std::string_view cpuinfo);
// "$XDG_CACHE_HOME/strata/profiles", else "~/.cache/strata/profiles"; $STRATA_CACHE_DIR replaces
// the "<cache>/strata" part (tests point it at a temporary directory). Created when missing;
// kNotFound when there is no HOME to put it in, kIoError when it cannot be created.
Result<std::filesystem::path> profile_cache_dir();
// The file of `key` in `dir`: "profile-<hash of the key>.json".
std::filesystem::path cached_profile_path(const std::filesystem::path& dir, const MachineKey& key);

struct CachedProfile {
  planner::HardwareProfile profile;
  bool quick = false;  // measured in `strata profile --quick` mode
  std::filesystem::path file;
};
// The cached profile of `key`, or nullopt when there is none. A file that cannot be read, is not
// a profile, was written by another cache format or records another machine is an error naming
// the file and saying to delete it or to run `strata profile --refresh`.
Result<std::optional<CachedProfile>> load_cached_profile_entry(const MachineKey& key);
Result<std::optional<planner::HardwareProfile>> load_cached_profile(const MachineKey& key);
// Writes `profile` (its machine set to `key`) as the cached profile of `key`; returns the file.
Result<std::filesystem::path> store_cached_profile(const MachineKey& key,
                                                   const planner::HardwareProfile& profile,
                                                   bool quick = false);

}  // namespace strata::tools
