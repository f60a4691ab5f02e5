// Regex: a compiled PCRE2 pattern with Unicode properties (\p{L}, \p{N}) and lookaround, as the
// tokenizer's Split and ByteLevel pre-tokenizers need. Immutable once compiled: find_all may be
// called from several threads at once (each call has its own match data). Offsets are bytes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace strata::text {

class Regex {
 public:
  // Compiles `pattern` in UTF mode with Unicode character properties. `what` names the pattern's
  // origin in errors (e.g. "tokenizer.json: pre_tokenizer Split").
  static Result<Regex> compile(std::string_view pattern, const std::string& what);
  // A regex matching `literal` exactly.
  static Result<Regex> literal(std::string_view literal, const std::string& what);

  // Every non-overlapping match, left to right, as [begin, end) byte ranges.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
};

}  // namespace strata::text
