#include "testing/test_data.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>
#include <string>

#include <unistd.h>

namespace strata::testing {

std::filesystem::path test_data_dir() {
  if (const char* env = std::getenv("STRATA_TEST_DATA"); env && *env) return env;
  return STRATA_TEST_DATA_DEFAULT;
}

namespace {

// The directories make_temp_dir made, removed when the test process that made them exits
// (STRATA_KEEP_TEST_DIRS=1 keeps them to look at).
struct MadeDirs {
  std::mutex mu;
  std::vector<std::filesystem::path> dirs;
  pid_t owner = ::getpid();
};

MadeDirs& made_dirs() {
  static MadeDirs* made = [] {
    auto* m = new MadeDirs;
    std::atexit([] {
      MadeDirs& d = made_dirs();
      if (::getpid() != d.owner) return;  // a forked child leaves its parent's directories
      if (const char* keep = std::getenv("STRATA_KEEP_TEST_DIRS"); keep && *keep && std::string(keep) != "0") return;
      std::lock_guard lock(d.mu);
      for (const auto& dir : d.dirs) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    });
    return m;
  }();
  return *made;
}

}  // namespace

std::filesystem::path make_temp_dir(const char* prefix) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             (std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  MadeDirs& made = made_dirs();
  std::lock_guard lock(made.mu);
  made.dirs.push_back(dir);
  return dir;
}

}  // namespace strata::testing
