// Reading the job's requests: each line parsed, tokenized and checked against the model and the
// job's limits, or answered at once with an error line.
#include "runtime/batch_job_impl.h"

#include <algorithm>
#include <string>

#include "runtime/job_identity.h"

namespace strata::runtime::batch {

namespace {

uint64_t request_seed(uint64_t seed, const std::string& custom_id) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, then splitmix64
  for (unsigned char c : custom_id) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (seed + 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The seed of choice `i` of a request whose first choice samples with `seed`.
uint64_t choice_seed(uint64_t seed, int32_t i) {
  if (i == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i);  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

std::optional<text::RequestError> Job::prepare(Prepared& p) {
  const auto& r = p.req;
  const std::string who = "line " + std::to_string(r.line) + " (custom_id '" + r.custom_id + "')";
  const auto& cfg = cfg_;
  std::vector<int32_t> prompt;
  if (r.endpoint == text::Endpoint::kCompletions) {
    if (r.prompt) {
      if (r.prompt->empty()) return text::RequestError{"invalid_prompt", who + ": the prompt is empty"};
      prompt = tok_.encode(*r.prompt, /*add_special_tokens=*/true);
    } else {
      prompt = *r.prompt_ids;
      if (prompt.empty()) return text::RequestError{"invalid_prompt", who + ": the prompt is empty"};
    }
  } else {
    auto rendered = chat_template_->render(r.messages, r.chat);
    if (!rendered.is_ok()) {
      const Status& st = rendered.status();
      if (st.code() == StatusCode::kUnsupported)
        return text::RequestError{"unsupported", who + ": " + st.message(), /*job_level=*/true};
      return text::RequestError{
          "invalid_prompt", who + ": chat template " +
                                (chat_template_->is_jinja() ? "" : chat_template_->name() + ": ") +
                                st.message()};
    }
    prompt = tok_.encode(*rendered, /*add_special_tokens=*/false);
  }
  if (prompt.empty()) return text::RequestError{"invalid_prompt", who + ": the prompt has no tokens"};
  for (int32_t t : prompt)  // the tokenizer may know more tokens than the model embeds
    if (t >= cfg.vocab_size)
      return text::RequestError{"invalid_prompt",
                                who + ": token id " + std::to_string(t) + " is outside the model's vocabulary of " +
                                    std::to_string(cfg.vocab_size),
                                /*job_level=*/!r.prompt_ids.has_value()};  // the tokenizer's, not the request's
  const auto& ov = r.overrides;
  GenerationRequest& g = p.gen;
  g.max_new_tokens = ov.max_tokens.value_or(o_.max_tokens);
  const int64_t need = static_cast<int64_t>(prompt.size()) + g.max_new_tokens;
  // Over the context because of the job's --max-tokens (not the request's own), it is the job's.
  const bool default_too_long = !ov.max_tokens && static_cast<int64_t>(prompt.size()) < cfg.max_position_embeddings;
  if (need > cfg.max_position_embeddings)
    return text::RequestError{"context_length_exceeded",
                              who + ": the prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                                  std::to_string(g.max_new_tokens) + ") exceeds the model's context of " +
                                  std::to_string(cfg.max_position_embeddings) +
                                  " tokens; shorten the prompt or lower max_tokens",
                              default_too_long};
  if (o_.max_sequence_len > 0 && need > o_.max_sequence_len)
    return text::RequestError{"context_length_exceeded",
                              who + ": the prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                                  std::to_string(g.max_new_tokens) + ") exceeds the " +
                                  std::to_string(o_.max_sequence_len) +
                                  " positions per sequence the offloading policy was planned for; plan for longer "
                                  "prompts (--max-prompt-len, --max-tokens) or shorten this request",
                              /*job_level=*/true};
  g.prompt = std::move(prompt);
  g.sampling.temperature = ov.temperature.value_or(o_.temperature);
  g.sampling.top_p = ov.top_p.value_or(o_.top_p);
  g.sampling.top_k = ov.top_k.value_or(o_.top_k);
  g.sampling.seed = ov.seed.value_or(request_seed(o_.seed, r.custom_id));
  if (Status s = g.sampling.validate(); !s.is_ok()) return text::RequestError{"invalid_request", who + ": " + s.message()};
  g.ignore_eos = ov.ignore_eos.value_or(o_.ignore_eos);
  g.top_logprobs = r.logprobs ? r.top_logprobs : 0;
  p.stop = ov.stop.value_or(o_.stop);
  p.include_stop = ov.include_stop_str_in_output;
  for (int32_t t : ov.stop_token_ids)
    if (t >= cfg.vocab_size)
      return text::RequestError{"invalid_request", who + ": stop_token_ids: token id " + std::to_string(t) +
                                                       " is outside the model's vocabulary of " +
                                                       std::to_string(cfg.vocab_size)};
  g.stop_token_ids = ov.stop_token_ids;
  if (ov.min_tokens > g.max_new_tokens)
    return text::RequestError{"invalid_request", who + ": min_tokens (" + std::to_string(ov.min_tokens) +
                                                     ") is more than max_tokens (" +
                                                     std::to_string(g.max_new_tokens) + ")"};
  g.min_tokens = ov.min_tokens;
  for (const auto& [t, bias] : ov.logit_bias)
    if (t >= cfg.vocab_size)
      return text::RequestError{"invalid_request", who + ": logit_bias: token id " + std::to_string(t) +
                                                       " is outside the model's vocabulary of " +
                                                       std::to_string(cfg.vocab_size)};
  g.logit_bias = ov.logit_bias;
  g.presence_penalty = ov.presence_penalty;
  g.frequency_penalty = ov.frequency_penalty;
  g.repetition_penalty = ov.repetition_penalty;
  g.min_p = ov.min_p;
  if (r.constraint) return constrain(r, who, g);
  return std::nullopt;
}

// Sets g's constraint from r's (compiled once per distinct constraint of the job).
std::optional<text::RequestError> Job::constrain(const text::BatchRequest& r, const std::string& who,
                                                 GenerationRequest& g) {
  using Kind = text::ConstraintSpec::Kind;
  const text::ConstraintSpec& spec = *r.constraint;
  std::string key = std::to_string(static_cast<int>(spec.kind)) + ":" + spec.source;
  for (const auto& c : spec.choices) key.append("\n").append(std::to_string(c.size())).append(":").append(c);
  auto it = constraints_.find(key);
  if (it == constraints_.end()) {
    Result<std::shared_ptr<const text::Constraint>> c = text::Constraint::json_object();
    if (spec.kind == Kind::kJsonSchema) {
      c = text::Constraint::json_schema(nlohmann::ordered_json::parse(spec.source), spec.field);
    } else if (spec.kind == Kind::kRegex) {
      c = text::Constraint::regex(spec.source, spec.field);
    } else if (spec.kind == Kind::kChoice) {
      c = text::Constraint::choice(spec.choices, spec.field);
    }
    if (!c.is_ok())
      return text::RequestError{c.status().code() == StatusCode::kUnsupported ? "unsupported" : "invalid_request",
                                who + ": " + c.status().message()};
    it = constraints_.emplace(std::move(key), *c).first;
  }
  if (!trie_) trie_ = std::make_shared<text::TokenTrie>(tok_, cfg_.vocab_size);
  g.constraint = it->second;
  g.trie = trie_;
  return std::nullopt;
}

Status Job::handle_line(const std::string& line, int64_t line_no, std::vector<Prepared>& window) {
  text::ParsedLine parsed = text::parse_request_line(line, line_no, {.ignore_unknown_fields = o_.ignore_unknown_fields});
  for (const text::FieldProblem& p : parsed.ignored_fields) {
    if (!warned_fields_.insert(p.field).second) continue;
    log_.warn("line " + std::to_string(line_no) + ": " + p.message +
              ": ignored (--ignore-unknown-fields); the request runs without it, as does every other request "
              "with '" + p.field + "' (not reported again)");
  }
  const bool duplicate = parsed.custom_id && !seen_ids_.insert(*parsed.custom_id).second;
  // Already answered in the output: by custom_id; a duplicate's error line by its count per id;
  // a line without a readable custom_id by its line number.
  bool answered = false;
  if (!parsed.custom_id) {
    answered = resume_.done_lines_without_id.count(line_no) > 0;
  } else if (duplicate) {
    auto it = resume_.duplicates.find(*parsed.custom_id);
    if (it != resume_.duplicates.end() && it->second > 0) {
      --it->second;
      answered = true;
    }
  } else {
    answered = resume_.done_ids.count(*parsed.custom_id) > 0;
  }
  if (answered) {
    ++sum_.skipped;
    return Status::ok();
  }
  if (o_.ordered) order_.push_back(line_no);  // this line gets a record
  // A line that becomes an error line: read, with nothing to generate.
  auto refuse = [&](const std::optional<std::string>& custom_id, const text::RequestError& e) {
    progress_->request_read(0);
    return write_error(line_no, custom_id, e);
  };
  if (duplicate) {
    return refuse(parsed.custom_id,
                  {"duplicate_custom_id", "line " + std::to_string(line_no) + ": custom_id '" + *parsed.custom_id +
                                              "' was already used by an earlier line; custom_ids must be unique"});
  }
  if (!parsed.request) return refuse(parsed.custom_id, parsed.error);
  Prepared p;
  p.req = std::move(*parsed.request);
  if (auto err = prepare(p)) return refuse(p.req.custom_id, *err);
  progress_->request_read(static_cast<int64_t>(p.req.n) * p.gen.max_new_tokens);
  for (int32_t i = 1; i < p.req.n; ++i) {  // the other choices: the same prompt, their own seeds
    Prepared c = p;
    c.choice = i;
    c.gen.sampling.seed = choice_seed(p.gen.sampling.seed, i);
    window.push_back(std::move(c));
  }
  window.push_back(std::move(p));
  return Status::ok();
}

Status Job::read_requests(text::LineReader& reader, std::vector<Prepared>& window, bool* more) {
  std::string line;
  while (static_cast<int32_t>(window.size()) < std::max(1, o_.window)) {
    if (interrupted()) return cancelled("interrupted");
    STRATA_ASSIGN_OR_RETURN(*more, reader.next(line));
    if (!*more) return Status::ok();
    if (is_blank(line)) continue;
    if (o_.shard.sharded()) {  // another shard's request (every line has an id: open_output checked)
      const std::optional<std::string> id = request_custom_id(line);
      if (!id || !o_.shard.owns(*id)) continue;
    }
    STRATA_RETURN_IF_ERROR(handle_line(line, reader.line_number(), window));
  }
  return Status::ok();
}

}  // namespace strata::runtime::batch
