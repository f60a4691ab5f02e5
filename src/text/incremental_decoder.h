// IncrementalDecoder: turns generated token ids into text as they arrive, never emitting half a
// UTF-8 character. It decodes a short window of recent tokens (starting inside the prompt, so
// decoders that strip a leading space see the same context every time) and emits only the text
// that the newest token completed. The concatenation of everything emitted plus flush() equals
// decode(prompt + generated) minus decode(prompt). One per sequence; not thread safe; borrows
// the Tokenizer, which must outlive it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace strata::text {

class IncrementalDecoder {
 public:
  // `context`: the prompt's ids (only its last few are kept).
  IncrementalDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context, bool skip_special_tokens = true);

  // Adds one token; returns the text it completed (possibly "").
  std::string push(int32_t id);
  // Returns whatever text is still held back (an incomplete character at the end becomes U+FFFD).
  std::string flush();

 private:
  std::string delta(bool final);

  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;  // window start
  size_t read_ = 0;    // tokens before this have had their text emitted
};

}  // namespace strata::text
