#include "text/incremental_decoder.h"

#include <algorithm>

#include "text/utf8.h"

namespace strata::text {

namespace {
constexpr size_t kContextTokens = 6;
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool ends_with_replacement(const std::string& s) {
  return s.size() >= kReplacement.size() && s.compare(s.size() - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
}
}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, std::span<const int32_t> context,
                                       bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {
  const size_t keep = std::min(context.size(), kContextTokens);
  ids_.assign(context.end() - static_cast<std::ptrdiff_t>(keep), context.end());
  prefix_ = 0;
  read_ = ids_.size();
}

std::string IncrementalDecoder::delta(bool final) {
  if (read_ >= ids_.size()) return "";
  const std::span<const int32_t> all(ids_);
  const std::string before = tok_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string after = tok_.decode(all.subspan(prefix_), skip_special_);
  // Hold text that ends inside a character (decoded as U+FFFD) until more tokens arrive.
  if (!final && (after.size() <= before.size() || ends_with_replacement(after))) return "";
  // `after` normally extends `before`; when the new token completed a character that `before`
  // showed as U+FFFD, emit from the first byte where they differ (at a character boundary).
  size_t common = 0;
  const size_t n = std::min(before.size(), after.size());
  while (common < n && before[common] == after[common]) ++common;
  if (common < before.size()) {
    while (common > 0 && (static_cast<uint8_t>(after[common]) & 0xC0) == 0x80) --common;
  }
  std::string out = after.substr(common == before.size() ? before.size() : common);
  prefix_ = read_;
  read_ = ids_.size();
  return out;
}

std::string IncrementalDecoder::push(int32_t id) {
  ids_.push_back(id);
  return delta(false);
}

std::string IncrementalDecoder::flush() { return delta(true); }

}  // namespace strata::text
