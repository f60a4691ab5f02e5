#include "common/crash_point.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include <signal.h>
#include <unistd.h>

namespace strata {

namespace {

struct CrashSpec {
  std::string name;
  long count = 0;  // 0: no crash point chosen
};

const CrashSpec& spec() {
  static const CrashSpec s = [] {
    CrashSpec c;
    const char* env = std::getenv("STRATA_CRASH_AT");
    if (env == nullptr) return c;
    const std::string v = env;
    const size_t colon = v.rfind(':');
    c.name = v.substr(0, colon);
    c.count = colon == std::string::npos ? 1 : std::atol(v.c_str() + colon + 1);
    return c;
  }();
  return s;
}

std::atomic<long> arrivals{0};

}  // namespace

bool crash_point_due(std::string_view name) {
  const CrashSpec& s = spec();
  if (s.count <= 0 || name != s.name) return false;
  return arrivals.fetch_add(1) + 1 == s.count;
}

void crash_now() {
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

}  // namespace strata
