// Token-id lists as users type them: "1, 2 3" or "[1,2,3]". Pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::text {

// Parses integers separated by commas and/or whitespace, optionally inside [ ]. Each id must be
// in [0, vocab_size) when vocab_size > 0; the error names the offending entry.
Result<std::vector<int32_t>> parse_token_ids(std::string_view text, int64_t vocab_size = 0);
std::string format_token_ids(const std::vector<int32_t>& ids);  // "1 2 3"

}  // namespace strata::text
