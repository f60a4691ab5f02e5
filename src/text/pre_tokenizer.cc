#include "text/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "text/json_util.h"
#include "text/regex.h"
#include "text/utf8.h"

namespace strata::text {

std::string byte_level_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) append_utf8(out, byte_to_unicode(static_cast<uint8_t>(c)));
  return out;
}

namespace {

// GPT-2's pattern, as the ByteLevel pre-tokenizer uses it.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits `p` at the regex's matches the way tokenizers' NormalizedString::split does.
void split_with(const Piece& p, const Regex& re, Behavior behavior, bool invert, std::vector<Piece>& out) {
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  if (p.text.empty()) {
    spans.push_back({0, 0, false});
  } else {
    size_t prev = 0;
    for (auto [b, e] : re.find_all(p.text)) {
      if (prev != b) spans.push_back({prev, b, false});
      spans.push_back({b, e, true});
      prev = e;
    }
    if (prev != p.text.size()) spans.push_back({prev, p.text.size(), false});
  }
  if (invert)
    for (auto& s : spans) s.match = !s.match;
  struct Cut {
    size_t b, e;
    bool remove;
  };
  std::vector<Cut> cuts;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& s : spans) cuts.push_back({s.b, s.e, false});
      break;
    case Behavior::kRemoved:
      for (const auto& s : spans) cuts.push_back({s.b, s.e, s.match});
      break;
    case Behavior::kContiguous: {
      bool prev = false;
      for (const auto& s : spans) {
        if (s.match == prev && !cuts.empty()) cuts.back().e = s.e;
        else cuts.push_back({s.b, s.e, false});
        prev = s.match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev = false;
      for (const auto& s : spans) {
        if (s.match && !prev && !cuts.empty()) cuts.back().e = s.e;
        else cuts.push_back({s.b, s.e, false});
        prev = s.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !prev && !cuts.empty()) cuts.back().b = it->b;
        else cuts.push_back({it->b, it->e, false});
        prev = it->match;
      }
      std::reverse(cuts.begin(), cuts.end());
      break;
    }
  }
  for (const auto& c : cuts) {
    if (c.remove || c.e == c.b) continue;
    out.push_back({p.text.substr(c.b, c.e - c.b), p.at_start && c.b == 0});
  }
}

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->split(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPre : public PreTokenizer {
 public:
  SplitPre(Regex re, Behavior b, bool invert) : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void split(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (const auto& p : pieces) split_with(p, re_, behavior_, invert_, out);
    pieces.swap(out);
  }

 private:
  Regex re_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, std::optional<Regex> re) : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}
  void split(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      if (re_) split_with(p, *re_, Behavior::kIsolated, false, out);
      else if (!p.text.empty()) out.push_back(std::move(p));
    }
    for (auto& p : out) p.text = byte_level_encode(p.text);
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> re_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePre : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, PrependScheme scheme, bool split, Regex re)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split), re_(std::move(re)) {}
  void split(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      std::string t;
      for (char c : p.text) {
        if (c == ' ') t += replacement_;
        else t += c;
      }
      const bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start)))
        t.insert(0, replacement_);
      Piece q{std::move(t), p.at_start};
      if (split_) split_with(q, re_, Behavior::kMergedWithNext, false, out);
      else if (!q.text.empty()) out.push_back(std::move(q));
    }
    pieces.swap(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Regex re_;
};

}  // namespace

Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  STRATA_ASSIGN_OR_RETURN(std::string type, json_string(j, "type", where));
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      return invalid_argument(at + ": 'pretokenizers' must be an array");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(auto p, parse_pre_tokenizer(j["pretokenizers"][i],
                                                          where + ".pretokenizers[" + std::to_string(i) + "]"));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
  }
  if (type == "Split") {
    if (!j.contains("pattern") || !j["pattern"].is_object()) return invalid_argument(at + ": missing 'pattern'");
    const auto& pat = j["pattern"];
    Result<Regex> re = Status(StatusCode::kInvalidArgument, at + ": 'pattern' needs 'String' or 'Regex'");
    if (pat.contains("String") && pat["String"].is_string()) re = Regex::literal(pat["String"].get<std::string>(), at);
    else if (pat.contains("Regex") && pat["Regex"].is_string()) re = Regex::compile(pat["Regex"].get<std::string>(), at);
    if (!re.is_ok()) return re.status();
    STRATA_ASSIGN_OR_RETURN(std::string b, json_string(j, "behavior", at));
    Behavior behavior;
    if (b == "Removed") behavior = Behavior::kRemoved;
    else if (b == "Isolated") behavior = Behavior::kIsolated;
    else if (b == "MergedWithPrevious") behavior = Behavior::kMergedWithPrevious;
    else if (b == "MergedWithNext") behavior = Behavior::kMergedWithNext;
    else if (b == "Contiguous") behavior = Behavior::kContiguous;
    else return unsupported(at + ": split behavior '" + b + "' is not supported");
    STRATA_ASSIGN_OR_RETURN(bool invert, json_bool_or(j, "invert", false, at));
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(re).value(), behavior, invert));
  }
  if (type == "ByteLevel") {
    STRATA_ASSIGN_OR_RETURN(bool prefix, json_bool_or(j, "add_prefix_space", true, at));
    STRATA_ASSIGN_OR_RETURN(bool use_regex, json_bool_or(j, "use_regex", true, at));
    std::optional<Regex> re;
    if (use_regex) {
      STRATA_ASSIGN_OR_RETURN(Regex r, Regex::compile(kGpt2Pattern, at));
      re = std::move(r);
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPre(prefix, std::move(re)));
  }
  if (type == "Metaspace") {
    STRATA_ASSIGN_OR_RETURN(std::string rep, json_string_or(j, "replacement", "\u2581", at));
    PrependScheme scheme = PrependScheme::kAlways;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      STRATA_ASSIGN_OR_RETURN(std::string s, json_string(j, "prepend_scheme", at));
      if (s == "always") scheme = PrependScheme::kAlways;
      else if (s == "first") scheme = PrependScheme::kFirst;
      else if (s == "never") scheme = PrependScheme::kNever;
      else return unsupported(at + ": prepend_scheme '" + s + "' is not supported");
    } else {
      STRATA_ASSIGN_OR_RETURN(bool add, json_bool_or(j, "add_prefix_space", true, at));
      scheme = add ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    STRATA_ASSIGN_OR_RETURN(bool split, json_bool_or(j, "split", true, at));
    STRATA_ASSIGN_OR_RETURN(Regex re, Regex::literal(rep, at));
    return std::unique_ptr<PreTokenizer>(new MetaspacePre(rep, scheme, split, std::move(re)));
  }
  if (type == "WhitespaceSplit") {
    STRATA_ASSIGN_OR_RETURN(Regex re, Regex::compile(R"(\s+)", at));
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(re), Behavior::kRemoved, false));
  }
  return unsupported(where + ": pre-tokenizer type '" + type + "' is not supported (supported: Sequence, Split, "
                     "ByteLevel, Metaspace, WhitespaceSplit)");
}

}  // namespace strata::text
