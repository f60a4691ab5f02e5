#include "text/normalizer.h"

#include <vector>

#include <nlohmann/json.hpp>

#include "text/json_util.h"
#include "text/regex.h"
#include "text/utf8.h"

#ifdef STRATA_HAVE_ICU
#include <unicode/normalizer2.h>
#include <unicode/locid.h>
#include <unicode/unistr.h>
#endif

namespace strata::text {

bool have_unicode_normalization() {
#ifdef STRATA_HAVE_ICU
  return true;
#else
  return false;
#endif
}

Result<std::string> unicode_normalize(const std::string& s, UnicodeForm form) {
#ifdef STRATA_HAVE_ICU
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case UnicodeForm::kNfc: n = icu::Normalizer2::getNFCInstance(err); break;
    case UnicodeForm::kNfd: n = icu::Normalizer2::getNFDInstance(err); break;
    case UnicodeForm::kNfkc: n = icu::Normalizer2::getNFKCInstance(err); break;
    case UnicodeForm::kNfkd: n = icu::Normalizer2::getNFKDInstance(err); break;
  }
  if (U_FAILURE(err) || !n) return internal_error("ICU normalizer unavailable");
  icu::UnicodeString in = icu::UnicodeString::fromUTF8(s);
  icu::UnicodeString out = n->normalize(in, err);
  if (U_FAILURE(err)) return internal_error(std::string("ICU normalization failed: ") + u_errorName(err));
  std::string r;
  out.toUTF8String(r);
  return r;
#else
  (void)s;
  (void)form;
  return unsupported("Unicode normalization (NFC/NFD/NFKC/NFKD/Lowercase) needs strata built with ICU "
                     "(install libicu-dev and reconfigure)");
#endif
}

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string normalize(std::string s) const override {
    for (const auto& p : parts_) s = p->normalize(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string normalize(std::string s) const override { return s.empty() ? s : prefix_ + s; }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  std::string normalize(std::string s) const override {
    auto matches = re_.find_all(s);
    if (matches.empty()) return s;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : matches) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    return out;
  }

 private:
  Regex re_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string normalize(std::string s) const override {
    // Rust's char::is_whitespace (White_Space) is close to Python's isspace minus 0x1C-0x1F.
    std::string_view v = s;
    const std::string_view st = python_strip(v);
    if (st.empty()) return (left_ || right_) ? std::string() : s;
    const size_t lead = static_cast<size_t>(st.data() - v.data());
    const size_t begin = left_ ? lead : 0;
    const size_t end = right_ ? lead + st.size() : v.size();
    return std::string(v.substr(begin, end - begin));
  }

 private:
  bool left_, right_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(UnicodeForm form) : form_(form) {}
  std::string normalize(std::string s) const override {
    auto r = unicode_normalize(s, form_);
    return r.is_ok() ? std::move(r).value() : s;  // availability is checked at parse time
  }

 private:
  UnicodeForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  std::string normalize(std::string s) const override {
#ifdef STRATA_HAVE_ICU
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
    u.toLower(icu::Locale::getRoot());
    std::string r;
    u.toUTF8String(r);
    return r;
#else
    return s;
#endif
  }
};

}  // namespace

Result<std::unique_ptr<Normalizer>> parse_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  STRATA_ASSIGN_OR_RETURN(std::string type, json_string(j, "type", where));
  const std::string at = where + " (" + type + ")";
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      return invalid_argument(at + ": 'normalizers' must be an array");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      STRATA_ASSIGN_OR_RETURN(auto p, parse_normalizer(j["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]"));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    STRATA_ASSIGN_OR_RETURN(std::string prefix, json_string(j, "prepend", at));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    STRATA_ASSIGN_OR_RETURN(std::string content, json_string(j, "content", at));
    if (!j.contains("pattern") || !j["pattern"].is_object()) return invalid_argument(at + ": missing 'pattern'");
    const auto& pat = j["pattern"];
    Result<Regex> re = Status(StatusCode::kInvalidArgument, at + ": 'pattern' needs 'String' or 'Regex'");
    if (pat.contains("String") && pat["String"].is_string()) re = Regex::literal(pat["String"].get<std::string>(), at);
    else if (pat.contains("Regex") && pat["Regex"].is_string()) re = Regex::compile(pat["Regex"].get<std::string>(), at);
    if (!re.is_ok()) return re.status();
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(std::move(re).value(), std::move(content)));
  }
  if (type == "Strip") {
    STRATA_ASSIGN_OR_RETURN(bool left, json_bool_or(j, "strip_left", true, at));
    STRATA_ASSIGN_OR_RETURN(bool right, json_bool_or(j, "strip_right", true, at));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase") {
    if (!have_unicode_normalization())
      return unsupported(at + ": normalizer " + type + " needs strata built with ICU (install libicu-dev and reconfigure)");
    if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
    UnicodeForm f = type == "NFC" ? UnicodeForm::kNfc : type == "NFD" ? UnicodeForm::kNfd
                  : type == "NFKC" ? UnicodeForm::kNfkc : UnicodeForm::kNfkd;
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(f));
  }
  return unsupported(where + ": normalizer type '" + type + "' is not supported (supported: Sequence, Prepend, "
                     "Replace, Strip, NFC, NFD, NFKC, NFKD, Lowercase)");
}

}  // namespace strata::text
