// Normalizers of tokenizer.json ("normalizer"): rewrite a piece of input text before it is split
// and tokenized. Supported: Sequence, Prepend, Replace (string or regex), Strip, NFC, NFD, NFKC,
// NFKD and Lowercase (the Unicode ones need strata built with ICU). Immutable after parsing;
// thread safe.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace strata::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string s) const = 0;
};

// Parses a "normalizer" object; null yields nullptr (no normalization). An unknown or
// unsupported type is an error that names it and `where`.
Result<std::unique_ptr<Normalizer>> parse_normalizer(const nlohmann::json& j, const std::string& where);

// Unicode normalization forms, via ICU. Errors when strata was built without ICU.
enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };
Result<std::string> unicode_normalize(const std::string& s, UnicodeForm form);
bool have_unicode_normalization();

}  // namespace strata::text
