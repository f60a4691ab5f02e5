#include "testing/test_data.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace strata::testing {

std::filesystem::path test_data_dir() {
  if (const char* env = std::getenv("STRATA_TEST_DATA"); env && *env) return env;
  return STRATA_TEST_DATA_DEFAULT;
}

std::filesystem::path make_temp_dir(const char* prefix) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() /
             (std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace strata::testing
