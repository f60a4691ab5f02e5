// strata bench: benchmarks, one subcommand each. `strata bench io` measures disk reads through
// the io_uring and fallback backends. Results are printed as JSON lines (stdout, one per
// measurement, as they come) and a Markdown table with the machine they ran on.
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "common/log.h"
#include "common/units.h"
#include "storage/io_bench.h"
#include "storage/topology.h"

namespace strata::tools {

namespace {

// "a,b,c" -> values parsed by `parse`.
template <typename T, typename F>
Result<std::vector<T>> parse_list(const std::string& text, const char* flag, F parse) {
  std::vector<T> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    Result<T> v = parse(item);
    if (!v.is_ok()) return v.status().with_context(std::string(flag) + " item '" + item + "'");
    out.push_back(*v);
  }
  if (out.empty()) return invalid_argument(std::string(flag) + " needs at least one value");
  return out;
}

Result<int> parse_depth(const std::string& s) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v < 1 || v > 4096) {
    return invalid_argument("a queue depth is an integer in [1, 4096]");
  }
  return static_cast<int>(v);
}

Result<uint64_t> parse_size(const std::string& s) { return parse_bytes(s); }

struct IoArgs {
  std::string dir;
  std::string size = "8GiB";
  std::string depths = "1,4,16,64";
  std::string blocks = "256KiB,1MiB,4MiB";
  std::string fallback_depths = "1,16";
  int reps = 3;
  double max_seconds = 3.0;
  bool keep_file = false;
  bool reuse_file = false;
  bool no_register = false;
  std::string gpu_bus_id;
};

std::string machine_line(const std::string& dir) {
  char host[256] = "?";
  ::gethostname(host, sizeof(host) - 1);
  struct utsname u {};
  ::uname(&u);
  return std::string("host ") + host + ", Linux " + u.release + ", " + dir + " on " +
         storage::filesystem_type(dir);
}

Status run_io(const IoArgs& a) {
  Logger log;
  storage::IoBenchOptions o;
  o.dir = a.dir;
  STRATA_ASSIGN_OR_RETURN(o.file_bytes, parse_bytes(a.size));
  STRATA_ASSIGN_OR_RETURN(o.depths, parse_list<int>(a.depths, "--depths", parse_depth));
  STRATA_ASSIGN_OR_RETURN(o.block_sizes, parse_list<uint64_t>(a.blocks, "--blocks", parse_size));
  if (a.fallback_depths.empty() || a.fallback_depths == "none") {
    o.fallback_depths.clear();
  } else {
    STRATA_ASSIGN_OR_RETURN(o.fallback_depths,
                            parse_list<int>(a.fallback_depths, "--fallback-depths", parse_depth));
  }
  if (a.reps < 1) return invalid_argument("--reps must be at least 1");
  if (a.max_seconds <= 0) return invalid_argument("--max-seconds must be above 0");
  o.repetitions = a.reps;
  o.max_seconds_per_rep = a.max_seconds;
  o.keep_file = a.keep_file;
  o.reuse_file = a.reuse_file;
  o.register_buffers = !a.no_register;
  const std::string machine = machine_line(a.dir);
  log.info("bench io: " + machine);
  STRATA_ASSIGN_OR_RETURN(storage::Topology topo, storage::query_topology(a.gpu_bus_id));
  std::printf("%s\n", storage::format_topology(topo).c_str());
  STRATA_ASSIGN_OR_RETURN(auto results,
                          storage::run_io_bench(o, log, [](const storage::IoBenchResult& r) {
                            std::printf("%s\n", storage::io_bench_json(r).c_str());
                            std::fflush(stdout);
                          }));
  std::printf("\n%s; file %s; each repetition reads the file once or stops after %.1f s\n\n%s",
              machine.c_str(), format_bytes(o.file_bytes).c_str(), o.max_seconds_per_rep,
              storage::io_bench_table(results).c_str());
  return Status::ok();
}

void register_bench_io(CLI::App& bench, int* exit_code) {
  auto* cmd = bench.add_subcommand("io", "Disk read GB/s: io_uring at each queue depth and block "
                                         "size, the thread backend, and synchronous pread");
  static IoArgs args;
  cmd->add_option("--dir", args.dir, "directory on the drive to measure (a test file goes there)")
      ->required();
  cmd->add_option("--size", args.size, "test file size, e.g. 8GiB")->capture_default_str();
  cmd->add_option("--depths", args.depths, "io_uring queue depths")->capture_default_str();
  cmd->add_option("--blocks", args.blocks, "block sizes")->capture_default_str();
  cmd->add_option("--fallback-depths", args.fallback_depths,
                  "thread-backend depths at the largest block ('none' to skip)")
      ->capture_default_str();
  cmd->add_option("--reps", args.reps, "repetitions per point")->capture_default_str();
  cmd->add_option("--max-seconds", args.max_seconds, "time cap per repetition")
      ->capture_default_str();
  cmd->add_flag("--keep-file", args.keep_file, "leave the test file behind");
  cmd->add_flag("--reuse-file", args.reuse_file, "reuse a test file of the right size");
  cmd->add_flag("--no-register", args.no_register, "no io_uring registered buffers");
  cmd->add_option("--gpu-pci-bus-id", args.gpu_bus_id,
                  "also report where this GPU sits (e.g. 0000:3b:00.0)");
  cmd->callback([exit_code] { *exit_code = report("bench io", run_io(args)); });
}

}  // namespace

void register_bench(CLI::App& app, int* exit_code) {
  auto* bench = app.add_subcommand("bench", "Benchmarks (one subcommand each)");
  bench->require_subcommand(1);
  register_bench_io(*bench, exit_code);
}

}  // namespace strata::tools
