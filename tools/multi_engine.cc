#include "multi_engine.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json_read.h"
#include "common/units.h"
#include "device_numa.h"
#include "runtime/merge.h"
#include "runtime/shard.h"

namespace strata::tools {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

volatile std::sig_atomic_t g_forward = 0;  // a signal to pass on to the children
void on_parent_signal(int sig) { g_forward = sig; }

// MemAvailable of /proc/meminfo, bytes (0: unknown).
uint64_t mem_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

}  // namespace

Result<std::vector<EngineDevice>> parse_devices(const std::string& value, const std::vector<cuda::DeviceInfo>& gpus) {
  auto bad = [&](const std::string& why) {
    return invalid_argument("--devices '" + value + "': " + why +
                            "; give all (every GPU), GPU indexes (0,1 or cuda:0,cuda:1) or cpu,cpu,... (several "
                            "engines sharing the CPU)");
  };
  std::vector<EngineDevice> out;
  if (value == "all") {
    if (gpus.empty()) return bad("no GPU is visible");
    for (const auto& g : gpus)
      out.push_back({"cuda:" + std::to_string(g.index), g.pci_bus_id, g.index, g.total_memory});
    return out;
  }
  std::stringstream in(value);
  std::string item;
  bool cpu = false, gpu = false;
  while (std::getline(in, item, ',')) {
    if (item == "cpu") {
      cpu = true;
      out.push_back({"cpu", ""});
      continue;
    }
    std::string index = item.rfind("cuda:", 0) == 0 ? item.substr(5) : item;
    if (index.empty() || index.size() > 4 || index.find_first_not_of("0123456789") != std::string::npos)
      return bad("'" + item + "' is not cpu, cuda:N or a GPU index");
    const int i = std::stoi(index);
    const cuda::DeviceInfo* info = nullptr;
    for (const auto& g : gpus)
      if (g.index == i) info = &g;
    if (!info) return bad("there is no GPU " + index + " (" + std::to_string(gpus.size()) + " visible)");
    gpu = true;
    out.push_back({"cuda:" + std::to_string(i), info->pci_bus_id, i, info->total_memory});
  }
  if (out.empty() || value.back() == ',') return bad("an empty entry");
  if (cpu && gpu) return bad("GPUs and the CPU do not mix in one job (their answers may differ)");
  if (out.size() > static_cast<size_t>(runtime::kMaxShards)) return bad("too many engines");
  return out;
}

Result<std::vector<uint64_t>> gpu_mem_per_engine(const std::vector<EngineDevice>& devices,
                                                 const std::string& gpu_mem) {
  uint64_t budget = 0;
  if (!gpu_mem.empty()) {
    Result<uint64_t> b = parse_bytes(gpu_mem);
    if (!b.is_ok()) return b.status().with_context("--gpu-mem");
    budget = *b;
  }
  std::map<int, std::vector<size_t>> engines_of;  // GPU index -> its engines
  for (size_t e = 0; e < devices.size(); ++e)
    if (devices[e].gpu >= 0) engines_of[devices[e].gpu].push_back(e);
  std::vector<uint64_t> out(devices.size(), 0);
  for (const auto& [gpu, engines] : engines_of) {
    const uint64_t k = engines.size();
    const uint64_t total = devices[engines.front()].gpu_memory;
    std::string names;
    for (size_t e : engines) names += (names.empty() ? "" : ", ") + std::to_string(e);
    const std::string what = "GPU " + std::to_string(gpu) + " is named " + std::to_string(k) +
                             " times (engines " + names + ")";
    uint64_t each = budget;
    if (budget > 0 && k > 1 && total > 0 && budget > total / k) {
      return invalid_argument(what + ": " + std::to_string(k) + " x --gpu-mem " +
                              format_bytes(budget) + " = " + format_bytes(budget * k) +
                              " is more than its " + format_bytes(total) +
                              "; lower --gpu-mem to at most " + format_bytes(total / k) +
                              " or name GPU " + std::to_string(gpu) + " fewer times in --devices");
    }
    if (budget == 0 && k > 1) {
      if (total == 0)
        return invalid_argument(
            what + " but its memory size is not known; give --gpu-mem (each engine's budget)");
      each = total / 10 * 9 / k;
    }
    for (size_t e : engines) out[e] = each;
  }
  return out;
}

namespace {

// Takes every `--name VALUE` and `--name=VALUE` out of `args`; returns the last value ("": none).
std::string take_flag(std::vector<std::string>& args, const std::string& name) {
  std::string value;
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == name && i + 1 < args.size()) {
      value = args[++i];
    } else if (args[i].starts_with(name + "=")) {
      value = args[i].substr(name.size() + 1);
    } else {
      kept.push_back(args[i]);
    }
  }
  args = std::move(kept);
  return value;
}

}  // namespace

Result<std::vector<std::string>> generate_args_for_children() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  if (!in) return io_error("cannot read /proc/self/cmdline to start the engines", errno);
  std::vector<std::string> argv;
  for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
  size_t i = 1;
  while (i < argv.size() && argv[i] != "generate") ++i;
  if (i == argv.size()) return internal_error("the command line has no 'generate'");
  const std::set<std::string> replaced = {"--devices", "--device", "--threads", "--cpu-mem", "--json-summary"};
  std::vector<std::string> out;
  for (++i; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    const std::string name = a.substr(0, a.find('='));
    if (replaced.count(name)) {
      if (name == a) ++i;  // "--flag value"
      continue;
    }
    out.push_back(a);
  }
  return out;
}

Status run_multi_engine(const MultiEngineJob& j) {
  const int n = static_cast<int>(j.devices.size());
  const bool gpu = j.devices.front().device != "cpu";
  std::error_code ec;
  if (j.input == "-" || j.output == "-")
    return invalid_argument("--devices needs --input and --output to be files (each engine reads the whole input "
                            "and writes its own shard beside the output)");
  if (fs::exists(j.output, ec) && !j.resume && !j.overwrite)
    return invalid_argument(j.output + " already exists: pass --resume to continue that job or --overwrite to "
                            "replace it");
  // Budgets and threads: the host's, split between the engines.
  std::string cpu_mem;
  if (!j.cpu_mem.empty()) {
    Result<uint64_t> total = parse_bytes(j.cpu_mem);
    if (!total.is_ok()) return total.status().with_context("--cpu-mem");
    cpu_mem = std::to_string(*total / static_cast<uint64_t>(n));
  } else if (gpu) {
    if (const uint64_t avail = mem_available(); avail > 0) cpu_mem = std::to_string(avail / 10 * 9 / static_cast<uint64_t>(n));
  }
  // --gpu-mem: each engine's own, checked against the memory of a GPU that several engines share.
  std::vector<std::string> child_args = j.generate_args;
  std::vector<uint64_t> gpu_mem(static_cast<size_t>(n), 0);
  if (gpu) {
    const std::string given = take_flag(child_args, "--gpu-mem");
    STRATA_ASSIGN_OR_RETURN(gpu_mem, gpu_mem_per_engine(j.devices, given));
  }
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, (j.threads > 0 ? j.threads : cores) / n);
  std::string strata = fs::read_symlink("/proc/self/exe", ec).string();
  if (strata.empty()) return io_error("cannot find this strata binary (/proc/self/exe)", ec.value());

  struct Child {
    pid_t pid = -1;
    int code = -1;
    std::string summary;
    int numa = -1;
  };
  std::vector<Child> kids(static_cast<size_t>(n));
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = on_parent_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    Child& c = kids[static_cast<size_t>(i)];
    const EngineDevice& d = j.devices[static_cast<size_t>(i)];
    const runtime::ShardSpec spec{i, n};
    c.summary = runtime::shard_output_path(j.output, spec) + ".summary.json";
    if (!d.pci_bus_id.empty()) {
      Result<int> node = pci_numa_node(j.sysfs, d.pci_bus_id);
      c.numa = node.is_ok() ? *node : -1;
    }
    std::vector<std::string> args = {strata, "generate"};
    args.insert(args.end(), child_args.begin(), child_args.end());
    for (const std::string& a : {std::string("--shard"), spec.to_string(), std::string("--device"), d.device,
                                 std::string("--threads"), std::to_string(threads), std::string("--json-summary"),
                                 c.summary})
      args.push_back(a);
    if (!cpu_mem.empty()) {
      args.push_back("--cpu-mem");
      args.push_back(cpu_mem);
    }
    const uint64_t engine_gpu_mem = gpu_mem[static_cast<size_t>(i)];
    if (engine_gpu_mem > 0) {
      args.push_back("--gpu-mem");
      args.push_back(std::to_string(engine_gpu_mem));
    }
    if (!j.quiet)
      std::fprintf(
          stderr, "engine %d: %s, shard %s%s, %d threads%s%s\n", i, d.device.c_str(),
          spec.to_string().c_str(),
          c.numa >= 0 ? (", NUMA node " + std::to_string(c.numa)).c_str() : "", threads,
          cpu_mem.empty() ? "" : (", --cpu-mem " + cpu_mem).c_str(),
          engine_gpu_mem > 0 ? (", --gpu-mem " + std::to_string(engine_gpu_mem)).c_str() : "");
    std::fflush(stderr);
    c.pid = ::fork();
    if (c.pid < 0) return io_error("fork failed", errno);
    if (c.pid == 0) {
      ::setpgid(0, 0);  // signals reach it through the parent, once
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      if (c.numa >= 0) {
        Status b = bind_process_to_numa_node(j.sysfs, c.numa);
        if (!b.is_ok()) std::fprintf(stderr, "engine %d: not bound to NUMA node %d: %s\n", i, c.numa, b.message().c_str());
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(strata.c_str(), argv.data());
      std::fprintf(stderr, "engine %d: cannot run %s: %s\n", i, strata.c_str(), std::strerror(errno));
      ::_exit(127);
    }
  }
  int running = n;
  bool forwarded = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno != EINTR) break;
      if (g_forward && !forwarded) {
        forwarded = true;
        for (const Child& c : kids)
          if (c.code < 0) ::kill(c.pid, g_forward);
      }
      continue;
    }
    for (Child& c : kids)
      if (c.pid == pid) {
        c.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        --running;
      }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  std::string failed;
  bool cancelled = false;
  for (int i = 0; i < n; ++i) {
    const Child& c = kids[static_cast<size_t>(i)];
    if (c.code == 0) continue;
    cancelled = cancelled || c.code == 130;
    failed += (failed.empty() ? "" : ", ") + std::string("engine ") + std::to_string(i) + " (" +
              j.devices[static_cast<size_t>(i)].device + ", shard " + runtime::ShardSpec{i, n}.to_string() +
              ") exit " + std::to_string(c.code);
  }
  if (!failed.empty()) {
    const std::string msg = failed + "; the results written so far are in " + j.output +
                            ".shard-I-of-" + std::to_string(n) + ". Continue with the same command and --resume";
    return cancelled ? Status(StatusCode::kCancelled, msg) : io_error(msg, 0);
  }
  // Merge, then the summary: each engine and the total.
  Logger log(j.quiet ? LogLevel::kWarn : LogLevel::kInfo);
  runtime::MergeOptions mo{.input = j.input, .output = j.output, .shards = n, .input_order = true, .overwrite = true};
  STRATA_ASSIGN_OR_RETURN(runtime::MergeSummary merged, runtime::merge_shards(mo, log));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json engines = json::array();
  int64_t requests = 0, ok = 0, failed_n = 0, skipped = 0, in_tok = 0, out_tok = 0;
  std::string text;
  char buf[512];
  for (int i = 0; i < n; ++i) {
    const Child& c = kids[static_cast<size_t>(i)];
    Result<json> s = read_json_file(c.summary, JsonLimits{.max_bytes = 1 << 20});
    json e = s.is_ok() ? *s : json::object();
    e["engine"] = i;
    e["device"] = j.devices[static_cast<size_t>(i)].device;
    e["numa_node"] = c.numa;
    auto get = [&](const char* k) { return e.contains(k) && e[k].is_number() ? e[k].get<double>() : 0.0; };
    requests += static_cast<int64_t>(get("requests"));
    ok += static_cast<int64_t>(get("ok"));
    failed_n += static_cast<int64_t>(get("failed"));
    skipped += static_cast<int64_t>(get("skipped"));
    in_tok += static_cast<int64_t>(get("prompt_tokens"));
    out_tok += static_cast<int64_t>(get("completion_tokens"));
    std::snprintf(buf, sizeof buf, "  engine %d %-8s shard %d/%d: %lld requests (%lld ok, %lld failed, %lld already done), "
                  "%lld out tokens in %.2f s: %.1f out tok/s\n",
                  i, e["device"].get<std::string>().c_str(), i, n, static_cast<long long>(get("requests")),
                  static_cast<long long>(get("ok")), static_cast<long long>(get("failed")),
                  static_cast<long long>(get("skipped")), static_cast<long long>(get("completion_tokens")),
                  get("wall_s"), get("output_tokens_per_s"));
    text += buf;
    engines.push_back(std::move(e));
    fs::remove(c.summary, ec);
  }
  std::snprintf(buf, sizeof buf, "total: %lld requests (%lld ok, %lld failed, %lld already done), %lld in and %lld out "
                "tokens in %.2f s (wall, merge included): %.1f out tok/s, %.1f total tok/s\n",
                static_cast<long long>(requests), static_cast<long long>(ok), static_cast<long long>(failed_n),
                static_cast<long long>(skipped), static_cast<long long>(in_tok), static_cast<long long>(out_tok), wall,
                wall > 0 ? out_tok / wall : 0.0, wall > 0 ? (in_tok + out_tok) / wall : 0.0);
  text = std::to_string(n) + " engines:\n" + text + buf;
  if (!j.quiet) std::fprintf(stderr, "%s%s", text.c_str(), merged.to_text(j.output).c_str());
  if (!j.json_summary.empty()) {
    json total = {{"requests", requests}, {"ok", ok},           {"failed", failed_n},
                  {"skipped", skipped},   {"prompt_tokens", in_tok}, {"completion_tokens", out_tok},
                  {"wall_s", wall},       {"output_tokens_per_s", wall > 0 ? out_tok / wall : 0.0}};
    std::ofstream out(j.json_summary, std::ios::trunc);
    out << json{{"engines", engines}, {"total", total}}.dump(2) << "\n";
    if (!out) return io_error(j.json_summary + ": writing the JSON summary failed", errno);
  }
  return Status::ok();
}

}  // namespace strata::tools
