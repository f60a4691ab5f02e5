// `strata --version`: the project's version from CMake's project(), on stdout, exit code 0.
#include <string>

#include <gtest/gtest.h>

#include "testing/test_data.h"
#include "tools/cli_test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

TEST(VersionCli, PrintsTheProjectVersion) {
  const auto dir = testing::make_temp_dir("strata-version");
  const testing::CliStreams s =
      testing::run_strata_streams({"--version"}, (dir / "out").string(), (dir / "err").string());
  EXPECT_EQ(s.code, 0) << s.err;
  EXPECT_EQ(s.out, "strata " STRATA_VERSION "\n");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata
