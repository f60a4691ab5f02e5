// The disk read benchmark behind `strata bench io`: writes a test file of the asked size with
// O_DIRECT, then reads it sequentially with the io_uring backend at each (queue depth, block
// size), with the pread/pwrite thread backend, and with a plain synchronous pread loop (the
// baseline), several repetitions each, and reports GB/s (1e9 bytes per second). Each repetition
// reads the whole file or stops after a time cap, whichever comes first. Not thread safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/status.h"

namespace strata::bench {

struct IoBenchOptions {
  std::filesystem::path dir;                     // where the test file goes (the drive measured)
  uint64_t file_bytes = uint64_t{8} << 30;
  std::vector<int> depths = {1, 4, 16, 64};      // io_uring queue depths
  std::vector<uint64_t> block_sizes = {256 << 10, 1 << 20, 4 << 20};
  std::vector<int> fallback_depths = {1, 16};    // thread backend, at the largest block size
  int repetitions = 3;
  double max_seconds_per_rep = 3.0;
  bool register_buffers = true;                  // io_uring fixed buffers
  bool reuse_file = false;                       // keep an existing test file of the right size
  bool keep_file = false;                        // leave the test file behind
};

struct IoBenchResult {
  std::string backend;  // "io_uring", "threads", "pread" (synchronous baseline)
  std::string op;       // "read" or "write"
  int depth = 1;
  uint64_t block_bytes = 0;
  bool direct = true;   // O_DIRECT was in effect
  std::vector<double> gbps;  // one per repetition
  uint64_t bytes_per_rep = 0;  // bytes moved in the first repetition
  double min = 0, median = 0, max = 0;
};

// Runs the sweep; `on_result` (optional) sees each result as soon as it is measured.
Result<std::vector<IoBenchResult>> run_io_bench(
    const IoBenchOptions& options, Logger& log,
    const std::function<void(const IoBenchResult&)>& on_result = {});

std::string io_bench_json(const IoBenchResult& r);  // one JSON object, no newline
// A Markdown table of all results.
std::string io_bench_table(const std::vector<IoBenchResult>& results);
// Filesystem type of `dir` ("ext4", "xfs", "tmpfs", ... or the magic number in hex).
std::string filesystem_type(const std::filesystem::path& dir);

}  // namespace strata::bench
