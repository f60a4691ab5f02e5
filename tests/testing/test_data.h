// Where test fixtures live: $STRATA_TEST_DATA, else tests/data of the source tree.
#pragma once

#include <filesystem>

namespace strata::testing {

std::filesystem::path test_data_dir();
// A fresh empty directory under the system temp dir, unique per call; removed with what it holds
// when the test process exits (set STRATA_KEEP_TEST_DIRS=1 to keep it).
std::filesystem::path make_temp_dir(const char* prefix);

}  // namespace strata::testing
