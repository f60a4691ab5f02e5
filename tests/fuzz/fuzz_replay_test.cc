// Every input of every fuzz target's corpus (tests/fuzz/corpus/<target>) and every crash
// reproducer (tests/fuzz/regressions/<target>) run through the target's entry function, so
// that CI, without clang or libFuzzer, keeps what the fuzzers found fixed.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fuzz/fuzz_targets.h"

namespace strata::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_regular_file()) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

class FuzzReplay : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzReplay, CorpusAndReproducersRunClean) {
  const Target& t = GetParam();
  const fs::path root = STRATA_FUZZ_DIR;
  size_t n = 0;
  for (const char* kind : {"corpus", "regressions"}) {
    for (const fs::path& p : inputs(root / kind / std::string(t.name))) {
      SCOPED_TRACE(p.string());
      std::ifstream in(p, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      EXPECT_EQ(t.entry(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
      ++n;
    }
  }
  EXPECT_GT(n, 0u) << "no corpus for " << t.name;
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(kTargets),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace strata::fuzz
