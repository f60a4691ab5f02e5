// STRATA_CHECK: the one way to state an invariant. A broken invariant is a bug, not bad input:
// it prints file:line, the expression and an optional message, then aborts.
#pragma once

#include <string>

namespace strata::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace strata::detail

#define STRATA_CHECK(cond, ...)                                                          \
  do {                                                                                   \
    if (!(cond)) [[unlikely]]                                                            \
      ::strata::detail::check_failed(__FILE__, __LINE__, #cond, std::string{__VA_ARGS__}); \
  } while (0)
