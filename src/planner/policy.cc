#include "planner/policy.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace strata::planner {

using nlohmann::json;

std::string_view tier_name(Tier t) {
  switch (t) {
    case Tier::kGpu: return "gpu";
    case Tier::kCpu: return "cpu";
    case Tier::kDisk: return "disk";
  }
  return "?";
}

std::string_view attention_name(Attention a) { return a == Attention::kCpu ? "cpu" : "gpu"; }

Status check_workload(const Workload& w) {
  if (w.prompt_len <= 0 || w.gen_len <= 0)
    return invalid_argument("prompt and generation lengths must be positive (got " +
                            std::to_string(w.prompt_len) + " and " + std::to_string(w.gen_len) + ")");
  if (w.requests < 0) return invalid_argument("the request count cannot be negative");
  int64_t total = 0;
  for (size_t i = 0; i < w.mix.size(); ++i) {
    const LengthBucket& b = w.mix[i];
    const std::string at = "length mix bucket " + std::to_string(i) + " (" + std::to_string(b.prompt_len) +
                           "+" + std::to_string(b.gen_len) + " tokens, count " + std::to_string(b.count) + ")";
    if (b.prompt_len <= 0 || b.gen_len <= 0 || b.count <= 0)
      return invalid_argument(at + ": lengths and count must be positive");
    if (b.prompt_len > w.prompt_len || b.gen_len > w.gen_len)
      return invalid_argument(at + ": longer than the workload's maximum " + std::to_string(w.prompt_len) +
                              "+" + std::to_string(w.gen_len) + " that memory is planned for");
    total += b.count;
  }
  if (!w.mix.empty() && w.requests > 0 && total != w.requests)
    return invalid_argument("the length mix counts " + std::to_string(total) + " requests but the job has " +
                            std::to_string(w.requests));
  return Status::ok();
}

Workload workload_from_lengths(const std::vector<std::pair<int64_t, int64_t>>& lengths, int max_buckets,
                               bool continuous) {
  Workload w;
  w.continuous = continuous;
  if (lengths.empty() || max_buckets <= 0) return w;
  std::vector<std::pair<int64_t, int64_t>> sorted(lengths);
  std::sort(sorted.begin(), sorted.end());
  const int64_t n = static_cast<int64_t>(sorted.size());
  const int64_t buckets = std::min<int64_t>(max_buckets, n);
  w.requests = n;
  for (int64_t b = 0; b < buckets; ++b) {
    const int64_t first = b * n / buckets, last = (b + 1) * n / buckets;
    LengthBucket bucket;
    bucket.count = last - first;
    int64_t gen_sum = 0;
    for (int64_t i = first; i < last; ++i) {
      bucket.prompt_len = std::max(bucket.prompt_len, sorted[i].first);
      bucket.gen_len = std::max(bucket.gen_len, sorted[i].second);
      gen_sum += sorted[i].second;
    }
    w.prompt_len = std::max(w.prompt_len, bucket.prompt_len);
    w.gen_len = std::max(w.gen_len, bucket.gen_len);
    if (continuous) bucket.gen_len = (gen_sum + bucket.count - 1) / bucket.count;
    // Buckets that come out the same lengths are one bucket.
    if (!w.mix.empty() && w.mix.back().prompt_len == bucket.prompt_len && w.mix.back().gen_len == bucket.gen_len) {
      w.mix.back().count += bucket.count;
    } else {
      w.mix.push_back(bucket);
    }
  }
  // One length: the plain workload (continuous: unless the mean generation is not the longest).
  if (w.mix.size() == 1 && w.mix[0].gen_len == w.gen_len) w.mix.clear();
  return w;
}

namespace {

// Rounds to 6 decimals so policy files stay readable and diff cleanly.
double tidy(double v) { return std::round(v * 1e6) / 1e6; }

json phase_json(const PhaseTimes& t) {
  json res = json::object(), bounds = json::object();
  for (auto& [k, v] : t.resources) res[k] = tidy(v);
  for (auto& [k, v] : t.bounds) bounds[k] = tidy(v);
  return {{"layer_s", tidy(t.layer_s)}, {"bottleneck", t.bottleneck}, {"resources_s", res},
          {"bounds_s", bounds}};
}

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  Result<const json*> object(const json& j, const char* key) const {
    if (!j.contains(key) || !j.at(key).is_object()) return error(key, "missing (an object)");
    return &j.at(key);
  }
  Result<int64_t> integer(const json& j, const char* key, int64_t min, bool required = true) const {
    if (!j.contains(key)) {
      if (required) return error(key, "missing (an integer)");
      return int64_t{0};
    }
    const json& v = j.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min)
      return error(key, "must be an integer >= " + std::to_string(min) + ", not " + v.dump());
    return v.get<int64_t>();
  }
  Result<double> fraction(const json& j, const std::string& path, const char* key) const {
    if (!j.contains(key)) return 0.0;
    const json& v = j.at(key);
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1)
      return error(path + "." + key, "must be a number in [0, 1], not " + v.dump());
    return v.get<double>();
  }
  Result<double> number(const json& j, const char* key) const {
    if (!j.contains(key)) return 0.0;
    if (!j.at(key).is_number()) return error(key, "must be a number");
    return j.at(key).get<double>();
  }
  Result<std::string> text(const json& j, const std::string& path, const char* key,
                           const char* fallback) const {
    if (!j.contains(key)) return std::string(fallback);
    if (!j.at(key).is_string()) return error(path.empty() ? key : path + "." + key, "must be a string");
    return j.at(key).get<std::string>();
  }
  Status error(const std::string& field, const std::string& what) const {
    return invalid_argument(source_ + ": " + field + ": " + what);
  }

 private:
  std::string source_;
};

Status check_sum(const Reader& r, const char* what, double sum) {
  if (std::abs(sum - 1.0) > 1e-4)
    return r.error(what, "the fractions must add up to 1, not " + std::to_string(sum));
  return Status::ok();
}

}  // namespace

json policy_to_json(const Policy& p) {
  const auto& f = p.fractions;
  json j;
  j["model"] = p.model;
  j["prompt_len"] = p.workload.prompt_len;
  j["gen_len"] = p.workload.gen_len;
  if (p.workload.requests > 0) j["requests"] = p.workload.requests;
  if (!p.workload.mix.empty()) {
    json mix = json::array();
    for (const auto& b : p.workload.mix)
      mix.push_back({{"prompt_len", b.prompt_len}, {"gen_len", b.gen_len}, {"count", b.count}});
    j["mix"] = mix;
  }
  if (p.workload.continuous) j["continuous"] = true;
  j["gpu_batch_size"] = p.batch.gpu_batch_size;
  j["num_gpu_batches"] = p.batch.num_gpu_batches;
  j["weights"] = {{"gpu", tidy(f[kWg])}, {"cpu", tidy(f[kWc])}, {"disk", tidy(f[kWd])},
                  {"compression", compression_name(p.choices.weights)}};
  j["kv_cache"] = {{"gpu", tidy(f[kCg])}, {"cpu", tidy(f[kCc])}, {"disk", tidy(f[kCd])},
                   {"compression", compression_name(p.choices.kv)},
                   {"attention", attention_name(p.choices.attention)}};
  j["activations"] = {{"gpu", tidy(f[kHg])}, {"cpu", tidy(f[kHc])}};
  j["prefetch_slots"] = p.choices.prefetch_slots;
  if (!p.hardware.empty()) j["hardware"] = p.hardware;
  j["budgets"] = {{"gpu", p.budgets.gpu}, {"cpu", p.budgets.cpu}, {"disk", p.budgets.disk}};
  const Prediction& q = p.predicted;
  j["predicted"] = {{"tokens_per_s", tidy(q.tokens_per_s)},
                    {"prefill_s", tidy(q.prefill_s)},
                    {"decode_step_s", tidy(q.decode_step_s)},
                    {"block_s", tidy(q.block_s)},
                    {"job_s", tidy(q.job_s)},
                    {"bottleneck", q.bottleneck},
                    {"bytes", {{"gpu", q.bytes[0]}, {"cpu", q.bytes[1]}, {"disk", q.bytes[2]}}},
                    {"prefill", phase_json(q.prefill)},
                    {"decode", phase_json(q.decode)}};
  return j;
}

Result<Policy> parse_policy(const json& j, const std::string& source) {
  Reader r(source);
  if (!j.is_object()) return invalid_argument(source + ": a policy must be a JSON object");
  Policy p;
  STRATA_ASSIGN_OR_RETURN(p.model, r.text(j, "", "model", ""));
  STRATA_ASSIGN_OR_RETURN(p.workload.prompt_len, r.integer(j, "prompt_len", 1));
  STRATA_ASSIGN_OR_RETURN(p.workload.gen_len, r.integer(j, "gen_len", 1));
  STRATA_ASSIGN_OR_RETURN(p.workload.requests, r.integer(j, "requests", 0, false));
  if (j.contains("mix")) {
    const json& mix = j.at("mix");
    if (!mix.is_array()) return r.error("mix", "must be an array of {\"prompt_len\", \"gen_len\", \"count\"}");
    for (size_t i = 0; i < mix.size(); ++i) {
      const std::string at = "mix[" + std::to_string(i) + "]";
      if (!mix[i].is_object()) return r.error(at, "must be an object {\"prompt_len\", \"gen_len\", \"count\"}");
      LengthBucket b;
      for (auto [key, dst] : {std::pair{"prompt_len", &b.prompt_len}, std::pair{"gen_len", &b.gen_len},
                              std::pair{"count", &b.count}}) {
        auto v = r.integer(mix[i], key, 1);
        if (!v.is_ok()) return r.error(at + "." + key, "must be an integer >= 1");
        *dst = *v;
      }
      p.workload.mix.push_back(b);
    }
    Status ok = check_workload(p.workload);
    if (!ok.is_ok()) return r.error("mix", ok.message());
  }
  if (j.contains("continuous")) {
    if (!j.at("continuous").is_boolean()) return r.error("continuous", "must be true or false");
    p.workload.continuous = j.at("continuous").get<bool>();
  }
  STRATA_ASSIGN_OR_RETURN(p.batch.gpu_batch_size, r.integer(j, "gpu_batch_size", 1));
  STRATA_ASSIGN_OR_RETURN(p.batch.num_gpu_batches, r.integer(j, "num_gpu_batches", 1));
  if (j.contains("prefetch_slots")) {
    STRATA_ASSIGN_OR_RETURN(int64_t slots, r.integer(j, "prefetch_slots", kMinPrefetchSlots));
    if (slots > kMaxPrefetchSlots)
      return r.error("prefetch_slots", "must be " + std::to_string(kMinPrefetchSlots) + " or " +
                                           std::to_string(kMaxPrefetchSlots));
    p.choices.prefetch_slots = static_cast<int>(slots);
  }

  STRATA_ASSIGN_OR_RETURN(const json* w, r.object(j, "weights"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kWg], r.fraction(*w, "weights", "gpu"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kWc], r.fraction(*w, "weights", "cpu"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kWd], r.fraction(*w, "weights", "disk"));
  STRATA_RETURN_IF_ERROR(check_sum(r, "weights", p.fractions[kWg] + p.fractions[kWc] + p.fractions[kWd]));
  STRATA_ASSIGN_OR_RETURN(std::string wc, r.text(*w, "weights", "compression", "none"));
  auto wcomp = compression_from_name(wc);
  if (!wcomp) return r.error("weights.compression", "must be \"none\" or \"int4-g64\", not \"" + wc + "\"");
  p.choices.weights = *wcomp;

  STRATA_ASSIGN_OR_RETURN(const json* c, r.object(j, "kv_cache"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kCg], r.fraction(*c, "kv_cache", "gpu"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kCc], r.fraction(*c, "kv_cache", "cpu"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kCd], r.fraction(*c, "kv_cache", "disk"));
  STRATA_RETURN_IF_ERROR(check_sum(r, "kv_cache", p.fractions[kCg] + p.fractions[kCc] + p.fractions[kCd]));
  STRATA_ASSIGN_OR_RETURN(std::string cc, r.text(*c, "kv_cache", "compression", "none"));
  auto ccomp = compression_from_name(cc);
  if (!ccomp) return r.error("kv_cache.compression", "must be \"none\" or \"int4-g64\", not \"" + cc + "\"");
  p.choices.kv = *ccomp;
  STRATA_ASSIGN_OR_RETURN(std::string att, r.text(*c, "kv_cache", "attention", "cpu"));
  if (att != "cpu" && att != "gpu")
    return r.error("kv_cache.attention", "must be \"cpu\" or \"gpu\", not \"" + att + "\"");
  p.choices.attention = att == "cpu" ? Attention::kCpu : Attention::kGpu;

  STRATA_ASSIGN_OR_RETURN(const json* a, r.object(j, "activations"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kHg], r.fraction(*a, "activations", "gpu"));
  STRATA_ASSIGN_OR_RETURN(p.fractions[kHc], r.fraction(*a, "activations", "cpu"));
  STRATA_RETURN_IF_ERROR(check_sum(r, "activations", p.fractions[kHg] + p.fractions[kHc]));

  STRATA_ASSIGN_OR_RETURN(p.hardware, r.text(j, "", "hardware", ""));
  if (j.contains("budgets") && j.at("budgets").is_object()) {
    const json& b = j.at("budgets");
    for (auto [key, dst] : {std::pair{"gpu", &p.budgets.gpu}, std::pair{"cpu", &p.budgets.cpu},
                            std::pair{"disk", &p.budgets.disk}}) {
      if (!b.contains(key)) continue;
      if (!b.at(key).is_number_unsigned())
        return r.error(std::string("budgets.") + key, "must be a byte count");
      *dst = b.at(key).get<uint64_t>();
    }
  }
  if (j.contains("predicted") && j.at("predicted").is_object()) {
    const json& q = j.at("predicted");
    STRATA_ASSIGN_OR_RETURN(p.predicted.tokens_per_s, r.number(q, "tokens_per_s"));
    STRATA_ASSIGN_OR_RETURN(p.predicted.prefill_s, r.number(q, "prefill_s"));
    STRATA_ASSIGN_OR_RETURN(p.predicted.decode_step_s, r.number(q, "decode_step_s"));
    STRATA_ASSIGN_OR_RETURN(p.predicted.block_s, r.number(q, "block_s"));
    STRATA_ASSIGN_OR_RETURN(p.predicted.job_s, r.number(q, "job_s"));
    STRATA_ASSIGN_OR_RETURN(p.predicted.bottleneck, r.text(q, "predicted", "bottleneck", ""));
  }
  return p;
}

}  // namespace strata::planner
