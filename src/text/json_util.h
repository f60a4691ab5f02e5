// The checked JSON readers (common/json_read.h) under the names the tokenizer's parsers use.
// Pure functions; thread safe.
#pragma once

#include "common/json_read.h"

namespace strata::text {

using strata::json_bool_or;
using strata::json_int_in;
using strata::json_int_in_or;
using strata::json_int_or;
using strata::json_string;
using strata::json_string_or;
using strata::read_json_file;

}  // namespace strata::text
