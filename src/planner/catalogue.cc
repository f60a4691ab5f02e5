// The hardware catalogue compiled in from policies/hardware/*.json, and its lookups: by the
// entry's name, and by the device name and memory CUDA reports for a card. Pure, thread safe.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "planner/embedded_data.h"
#include "planner/hardware.h"

namespace strata::planner {

using nlohmann::json;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Lower case, letters and digits only, without the vendor and brand words CUDA names carry:
// "NVIDIA GeForce RTX 4090" -> "rtx4090", "Tesla T4" -> "t4", "NVIDIA A100-SXM4-40GB" -> "a100sxm440gb".
std::string normalised(std::string_view name) {
  std::string out, word;
  auto flush = [&] {
    if (word != "nvidia" && word != "geforce" && word != "tesla") out += word;
    word.clear();
  };
  for (char ch : lower(name)) {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      word += ch;
    } else {
      flush();
    }
  }
  flush();
  return out;
}

// The model number of a card: the first word with both a letter and a digit, or with digits only
// ("A100", "T4", "4090", "A10G", "L40S"), after the vendor and brand words.
std::string model_number(std::string_view name) {
  std::string word;
  std::vector<std::string> words;
  for (char ch : lower(name) + " ") {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      word += ch;
    } else if (!word.empty()) {
      words.push_back(word);
      word.clear();
    }
  }
  for (const auto& w : words) {
    if (w == "nvidia" || w == "geforce" || w == "tesla" || w == "rtx" || w == "quadro") continue;
    if (std::any_of(w.begin(), w.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      return w;
  }
  return {};
}

// Among `candidates` (indices into `all`), the entry for a card with `memory_bytes`: the closest
// memory, then data-sheet entries before measured machines, then the catalogue's order.
std::optional<size_t> closest(const std::vector<HardwareProfile>& all, const std::vector<size_t>& candidates,
                              uint64_t memory_bytes) {
  if (candidates.empty()) return std::nullopt;
  auto key = [&](size_t i) {
    const double gap = memory_bytes == 0 ? 0.0
                                         : std::abs(std::log(static_cast<double>(all[i].gpu.memory_bytes) /
                                                             static_cast<double>(memory_bytes)));
    // Catalogue memory is the usable part of the card (a few percent below what CUDA reports).
    const double rounded = std::round(gap * 20) / 20;
    return std::make_tuple(rounded, all[i].in_capacity_sweep ? 0 : 1, i);
  };
  return *std::min_element(candidates.begin(), candidates.end(),
                           [&](size_t a, size_t b) { return key(a) < key(b); });
}

}  // namespace

std::vector<HardwareProfile> hardware_catalogue() {
  std::vector<HardwareProfile> out;
  for (const auto& f : detail::embedded_files()) {
    std::string_view path = f.path;
    if (path.rfind("hardware/", 0) != 0) continue;
    std::string source = "policies/" + std::string(path);
    json j = json::parse(f.text, nullptr, /*allow_exceptions=*/false);
    STRATA_CHECK(!j.is_discarded(), source + " is not valid JSON");
    auto p = parse_hardware_profile(j, source);
    STRATA_CHECK(p.is_ok(), p.status().to_string());
    out.push_back(std::move(p).value());
  }
  std::sort(out.begin(), out.end(),
            [](const HardwareProfile& a, const HardwareProfile& b) { return a.name < b.name; });
  return out;
}

Result<HardwareProfile> catalogue_hardware(std::string_view name) {
  std::string want = lower(name);
  std::string names;
  for (auto& p : hardware_catalogue()) {
    if (lower(p.name) == want) return p;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return not_found("no hardware named '" + std::string(name) + "' in the catalogue (" + names +
                   "); give a profile file written by `strata profile` or one of those names");
}

Result<HardwareProfile> catalogue_hardware_for_cuda_name(std::string_view cuda_name, uint64_t memory_bytes) {
  const std::vector<HardwareProfile> all = hardware_catalogue();
  const std::string norm = normalised(cuda_name), model = model_number(cuda_name);
  std::vector<size_t> exact, same, family;
  for (size_t i = 0; i < all.size(); ++i) {
    for (const auto& n : all[i].gpu.cuda_names) {
      if (n == cuda_name) exact.push_back(i);
      else if (!norm.empty() && normalised(n) == norm) same.push_back(i);
      else if (!model.empty() && model_number(n) == model) family.push_back(i);
    }
  }
  for (const auto* set : {&exact, &same, &family}) {
    std::vector<size_t> unique(*set);
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    if (auto i = closest(all, unique, memory_bytes)) return all[*i];
  }
  std::string cards;
  for (const auto& p : all)
    for (const auto& n : p.gpu.cuda_names) cards += (cards.empty() ? "" : ", ") + n;
  return not_found("no catalogue entry for the GPU '" + std::string(cuda_name) + "' (the catalogue knows " +
                   cards + "); run `strata profile` on this machine, or pass --hardware NAME");
}

Result<std::string> embedded_policy_file(std::string_view relative_path) {
  for (const auto& f : detail::embedded_files())
    if (relative_path == f.path) return std::string(f.text);
  return not_found("policies/" + std::string(relative_path) + " is not compiled into strata");
}

}  // namespace strata::planner
