// Checks of command-line values shared by the subcommands, run before any work starts: every
// error names the flag, says what it allows and what it got. Pure apart from the file-system
// probes of check_dir_flag and check_policy_flag; thread safe.
#pragma once

#include <filesystem>
#include <string>

#include "common/status.h"

namespace strata::tools {

// A byte size ("24GiB", "512MB", "4096") above zero (or zero, with `allow_zero`: --disk-mem 0
// keeps everything off the disk); "" (not given) passes.
Status check_bytes_flag(const char* flag, const std::string& value, bool allow_zero = false);
// --gpu-mem and --cpu-mem above zero, --disk-mem zero or more.
Status check_budget_flags(const std::string& gpu, const std::string& cpu, const std::string& disk);
// auto, cpu, cuda, gpu or cuda:N.
Status check_device_flag(const std::string& value);
// none, int4 (or int4-g64) or auto.
Status check_compress_flag(const std::string& value);
// auto, none, or a policy file that exists.
Status check_policy_flag(const std::string& value);
// Sampling values as the engine takes them.
Status check_sampling_flags(float temperature, float top_p, int top_k);
// A directory strata can write in: one that exists, or one whose parent does (it is created).
Status check_dir_flag(const char* flag, const std::filesystem::path& dir);
// A file strata can create or replace: its directory exists and is writable.
Status check_output_file_flag(const char* flag, const std::filesystem::path& file);

}  // namespace strata::tools
