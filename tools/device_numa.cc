#include "device_numa.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace strata::tools {

namespace {

constexpr int kMpolPreferred = 1;  // MPOL_PREFERRED of <linux/mempolicy.h>

Result<std::string> read_line(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot read");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

// sysfs names PCI devices "dddd:bb:dd.f" in lower case; CUDA may write 8 domain digits.
std::string sysfs_bus_id(std::string id) {
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return std::tolower(c); });
  const size_t colon = id.find(':');
  if (colon != std::string::npos && colon > 4) id = id.substr(colon - 4);
  return id;
}

}  // namespace

Result<int> pci_numa_node(const std::string& sysfs, const std::string& pci_bus_id) {
  const std::string path = sysfs + "/bus/pci/devices/" + sysfs_bus_id(pci_bus_id) + "/numa_node";
  STRATA_ASSIGN_OR_RETURN(std::string text, read_line(path));
  int node = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), node);
  if (ec != std::errc() || p != text.data() + text.size() || node < -1)
    return corrupt(path + ": '" + text + "' is not a NUMA node number");
  return node;
}

Result<std::vector<int>> parse_cpu_list(const std::string& list) {
  std::vector<int> cpus;
  size_t pos = 0;
  auto number = [&](int& out) {
    auto [p, ec] = std::from_chars(list.data() + pos, list.data() + list.size(), out);
    if (ec != std::errc() || out < 0) return false;
    pos = static_cast<size_t>(p - list.data());
    return true;
  };
  while (pos < list.size()) {
    int a = 0, b = 0;
    if (!number(a)) return corrupt("cpu list '" + list + "': a number expected at " + std::to_string(pos));
    b = a;
    if (pos < list.size() && list[pos] == '-') {
      ++pos;
      if (!number(b) || b < a) return corrupt("cpu list '" + list + "': a bad range");
    }
    if (b - a > 65536) return corrupt("cpu list '" + list + "': a range too large");
    for (int c = a; c <= b; ++c) cpus.push_back(c);
    if (pos < list.size()) {
      if (list[pos] != ',') return corrupt("cpu list '" + list + "': ',' expected at " + std::to_string(pos));
      ++pos;
    }
  }
  return cpus;
}

Result<std::vector<int>> numa_node_cpus(const std::string& sysfs, int node) {
  const std::string path = sysfs + "/devices/system/node/node" + std::to_string(node) + "/cpulist";
  STRATA_ASSIGN_OR_RETURN(std::string text, read_line(path));
  Result<std::vector<int>> cpus = parse_cpu_list(text);
  if (!cpus.is_ok()) return cpus.status().with_context(path);
  return cpus;
}

Status bind_process_to_numa_node(const std::string& sysfs, int node) {
  if (node < 0 || node >= 1024) return invalid_argument("NUMA node " + std::to_string(node) + " out of range");
  STRATA_ASSIGN_OR_RETURN(std::vector<int> cpus, numa_node_cpus(sysfs, node));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus)
    if (c < CPU_SETSIZE) CPU_SET(c, &set);
  if (CPU_COUNT(&set) > 0 && ::sched_setaffinity(0, sizeof(set), &set) != 0)
    return io_error("sched_setaffinity to the CPUs of NUMA node " + std::to_string(node) + ": " + std::strerror(errno),
                    errno);
  unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {};
  mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
  if (::syscall(SYS_set_mempolicy, kMpolPreferred, mask, 1024ul) != 0)
    return io_error("set_mempolicy(MPOL_PREFERRED, node " + std::to_string(node) + "): " + std::strerror(errno), errno);
  return Status::ok();
}

}  // namespace strata::tools
