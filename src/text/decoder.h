// Decoders of tokenizer.json ("decoder"): turn a list of token strings back into text.
// Supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse and Strip. Each step
// maps a token list to a token list (as tokenizers' decode_chain does); the result is their
// concatenation. Immutable after parsing; thread safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Parses a "decoder" object; null yields nullptr (tokens are joined with spaces).
Result<std::unique_ptr<Decoder>> parse_decoder(const nlohmann::json& j, const std::string& where);

}  // namespace strata::text
