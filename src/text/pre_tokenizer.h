// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): split normalized text into the pieces the
// BPE model tokenizes one by one. Supported: Sequence, Split (string or regex pattern, every
// behaviour, invert), ByteLevel (with or without its GPT-2 regex, add_prefix_space), Metaspace
// (prepend_scheme always/first/never, split) and WhitespaceSplit. Immutable after parsing; thread
// safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::text {

struct Piece {
  std::string text;
  bool at_start = false;  // begins at byte 0 of the original input (Metaspace's "first" scheme)
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

// Parses a "pre_tokenizer" object; null yields nullptr (the whole piece is one word).
Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& j, const std::string& where);

// Maps each byte of `s` to GPT-2's printable alphabet (ByteLevel's final step).
std::string byte_level_encode(std::string_view s);

}  // namespace strata::text
