#include "runtime/batch_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/check.h"
#include "common/process.h"
#include "runtime/generator.h"
#include "runtime/job_identity.h"
#include "runtime/resume.h"
#include "text/batch_request.h"
#include "text/constraint.h"
#include "text/incremental_decoder.h"
#include "text/line_io.h"

namespace strata::runtime {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

uint64_t request_seed(uint64_t seed, const std::string& custom_id) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a, then splitmix64
  for (unsigned char c : custom_id) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (seed + 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// The seed of choice `i` of a request whose first choice samples with `seed`.
uint64_t choice_seed(uint64_t seed, int32_t i) {
  if (i == 0) return seed;
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i);  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A request ready for the engine: one sequence, choice `choice` of the request's n.
struct Prepared {
  text::BatchRequest req;
  int32_t choice = 0;
  GenerationRequest gen;
  std::vector<std::string> stop;
  bool include_stop = false;  // the stop string that ends the answer stays in its text
};

// Per-sequence state while a request runs.
struct Running {
  std::unique_ptr<text::IncrementalDecoder> decoder;
  std::string text;
  size_t max_stop = 0;
  bool stopped = false;  // by a stop string
  int64_t generated = 0;  // tokens so far
};

// The requests of a run of the Generator, handed out in order, with the state of each while it
// runs. `more` appends the job's next requests to a batch (false: the input has no more).
class PreparedFeed final : public RequestFeed {
 public:
  using More = std::function<Result<bool>(std::vector<Prepared>&)>;
  struct Live {
    Prepared p;
    Running run;
  };
  PreparedFeed(std::vector<Prepared> first, More more, const text::Tokenizer& tok)
      : queue_(std::make_move_iterator(first.begin()), std::make_move_iterator(first.end())),
        more_(std::move(more)), tok_(tok) {}

  Result<const GenerationRequest*> next() override {
    if (queue_.empty() && more_) {
      std::vector<Prepared> batch;
      STRATA_ASSIGN_OR_RETURN(bool again, more_(batch));
      if (!again) more_ = nullptr;
      for (auto& p : batch) queue_.push_back(std::move(p));
    }
    if (queue_.empty()) return nullptr;
    Live& l = live_[next_++];  // node-based: stays where it is until finished() erases it
    l.p = std::move(queue_.front());
    queue_.pop_front();
    l.run.decoder = std::make_unique<text::IncrementalDecoder>(tok_, l.p.gen.prompt);
    for (const auto& s : l.p.stop) l.run.max_stop = std::max(l.run.max_stop, s.size());
    return &l.p.gen;
  }
  Live& live(size_t index) { return live_.at(index); }
  size_t running() const { return live_.size(); }
  void finished(size_t index) { live_.erase(index); }

 private:
  std::deque<Prepared> queue_;
  More more_;
  const text::Tokenizer& tok_;
  std::unordered_map<size_t, Live> live_;
  size_t next_ = 0;
};

class Job {
 public:
  // `model` may be null for scan().
  Job(const model::ModelConfig& cfg, compute::SequenceModel* model, const text::Tokenizer& tok,
      const BatchJobOptions& o, Logger& log)
      : cfg_(cfg), model_(model), tok_(tok), o_(o), log_(log), batch_size_(std::max(1, o.batch_size)) {}

  Result<BatchSummary> run();
  Result<JobShape> scan();

 private:
  Status init_chat(bool warn);
  Status handle_line(const std::string& line, int64_t line_no, std::vector<Prepared>& window);
  // Reads requests into `window` until it holds o_.window of them or the input ends (*more false).
  Status read_requests(text::LineReader& reader, std::vector<Prepared>& window, bool* more);
  // Fixed blocks: the window's requests in blocks of batch_size_, each run all at once.
  Status run_window(std::vector<Prepared>& window);
  Status run_block(std::span<Prepared> block);
  // Continuous: the input's requests batch_size_ at a time, each finished one's slot taken by the
  // next (see Generator::set_slots).
  Status run_continuous(text::LineReader& reader);
  // One run of the Generator over the feed's requests (a fixed block, or a continuous run).
  Status run_feed(PreparedFeed& feed, int32_t slots, int32_t max_len, bool block);
  Status block_done();  // after_block, and the model it switches to
  Status write_error(int64_t line, const std::optional<std::string>& custom_id, const text::RequestError& e);
  Status open_output(int64_t& total);
  bool interrupted() const { return o_.interrupted && o_.interrupted->load(); }
  std::optional<text::RequestError> prepare(Prepared& p);
  // Keeps choice p.choice of its request (its result, or the error that ends the request); once
  // every choice is in, writes the request's record.
  Status finish_choice(const Prepared& p, std::optional<text::CompletionResult> result,
                       std::optional<text::RequestError> error, int64_t created);
  nlohmann::ordered_json logprobs_json(const Prepared& p, const GenerationResult& r, const std::string& text) const;

  const model::ModelConfig& cfg_;
  compute::SequenceModel* model_;
  const text::Tokenizer& tok_;
  const BatchJobOptions& o_;
  Logger& log_;
  std::unique_ptr<text::RecordWriter> writer_;
  // --ordered: the lines whose records are still to be written, in input order, and the records
  // that are ready but wait for an earlier line's.
  std::deque<int64_t> order_;
  std::map<int64_t, std::string> ready_;
  Status emit(int64_t line, std::string record);
  std::unique_ptr<Progress> progress_;
  // The choices of requests with some still running, by line.
  struct Choices {
    std::vector<std::optional<text::CompletionResult>> results;
    std::optional<text::RequestError> error;
    int32_t done = 0;
  };
  std::map<int64_t, Choices> choices_;
  std::shared_ptr<const text::TokenTrie> trie_;  // the vocabulary's bytes, for structured output (made once)
  // Compiled constraints by what they compile (kind and source): requests asking the same share
  // one, and with it the cache of its allowed sets.
  std::map<std::string, std::shared_ptr<const text::Constraint>> constraints_;
  std::optional<text::RequestError> constrain(const text::BatchRequest& r, const std::string& who, GenerationRequest& g);
  int64_t constraint_cut_ = 0;  // structured answers cut by max_tokens before they were complete
  BatchSummary sum_;
  std::optional<text::ChatTemplate> chat_template_;
  ResumeState resume_;  // what the output already answers
  std::unordered_set<std::string> seen_ids_;
  std::unordered_set<std::string> warned_fields_;  // ignored fields already reported
  std::string model_name_;
  int32_t batch_size_;  // sequences per block: the options', or the switched model's
  std::chrono::steady_clock::time_point started_;  // for the time to the first result
};

// Writes `record` (line `line`'s), or with --ordered keeps it until every earlier line's is written.
Status Job::emit(int64_t line, std::string record) {
  if (sum_.first_result_s < 0)
    sum_.first_result_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  if (!o_.ordered) return writer_->append(record);
  ready_.emplace(line, std::move(record));
  while (!order_.empty() && ready_.count(order_.front()) > 0) {
    auto it = ready_.find(order_.front());
    STRATA_RETURN_IF_ERROR(writer_->append(it->second));
    ready_.erase(it);
    order_.pop_front();
  }
  return Status::ok();
}

Status Job::write_error(int64_t line, const std::optional<std::string>& custom_id, const text::RequestError& e) {
  STRATA_RETURN_IF_ERROR(emit(line, text::format_error(line, custom_id, e)));
  ++sum_.failed;
  ++sum_.requests;
  ++sum_.errors[e.code];
  sum_.first_errors.emplace(e.code, e.message);
  if (e.job_level) ++sum_.failed_job;
  progress_->request_done(0, 0);
  return Status::ok();
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
  for (const auto& c : spec.choices) key += "\n" + std::to_string(c.size()) + ":" + c;
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
  if (duplicate) {
    return write_error(line_no, parsed.custom_id,
                       {"duplicate_custom_id", "line " + std::to_string(line_no) + ": custom_id '" + *parsed.custom_id +
                                                   "' was already used by an earlier line; custom_ids must be unique"});
  }
  if (!parsed.request) return write_error(line_no, parsed.custom_id, parsed.error);
  Prepared p;
  p.req = std::move(*parsed.request);
  if (auto err = prepare(p)) return write_error(line_no, p.req.custom_id, *err);
  for (int32_t i = 1; i < p.req.n; ++i) {  // the other choices: the same prompt, their own seeds
    Prepared c = p;
    c.choice = i;
    c.gen.sampling.seed = choice_seed(p.gen.sampling.seed, i);
    window.push_back(std::move(c));
  }
  window.push_back(std::move(p));
  return Status::ok();
}

Status Job::finish_choice(const Prepared& p, std::optional<text::CompletionResult> result,
                          std::optional<text::RequestError> error, int64_t created) {
  const text::BatchRequest& req = p.req;
  Choices& c = choices_[req.line];
  if (c.results.empty()) c.results.resize(static_cast<size_t>(req.n));
  if (error && !c.error) c.error = std::move(error);
  if (result) c.results[static_cast<size_t>(p.choice)] = std::move(result);
  if (++c.done < req.n) return Status::ok();
  Choices all = std::move(c);
  choices_.erase(req.line);
  if (all.error) return write_error(req.line, req.custom_id, *all.error);
  std::vector<text::CompletionResult> list;
  int64_t completion = 0;
  for (auto& r : all.results) {
    completion += r->completion_tokens;
    list.push_back(std::move(*r));
  }
  const int64_t prompt = list[0].prompt_tokens;
  ++sum_.ok;
  ++sum_.requests;
  sum_.prompt_tokens += prompt;
  sum_.completion_tokens += completion;
  progress_->request_done(prompt, completion);
  return emit(req.line, text::format_result(req, model_name_, list, created));
}

// The log-probabilities of the tokens that make the returned text, as OpenAI and vLLM give them:
// replayed through a decoder like the one that made the text, a token whose text would start at
// or past the text's end (the end-of-sequence token, tokens that carried a stop string the text
// leaves out) is not listed. Completions' top_logprobs hold the `logprobs` best and the sampled
// token (so `logprobs: 0` gives the sampled one), best first; chat's, the top_logprobs best.
ordered_json Job::logprobs_json(const Prepared& p, const GenerationResult& r, const std::string& text) const {
  auto token_text = [&](int32_t id) {
    const int32_t one[1] = {id};
    return tok_.decode(one, /*skip_special_tokens=*/false);
  };
  auto bytes_of = [](const std::string& s) {
    ordered_json b = ordered_json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  std::vector<int64_t> offsets;
  text::IncrementalDecoder replay(tok_, p.gen.prompt);
  size_t at = 0;
  for (size_t i = 0; i < r.tokens.size() && at < text.size(); ++i) {
    offsets.push_back(static_cast<int64_t>(at));
    at += replay.push(r.tokens[i]).size();
  }
  const size_t n = offsets.size();
  if (p.req.endpoint == text::Endpoint::kCompletions) {
    ordered_json tokens = ordered_json::array(), lps = ordered_json::array(), tops = ordered_json::array();
    for (size_t i = 0; i < n; ++i) {
      const std::string t = token_text(r.tokens[i]);
      tokens.push_back(t);
      lps.push_back(r.logprobs[i]);
      ordered_json top = ordered_json::object();
      if (i < r.top_logprobs.size())
        for (const auto& [id, lp] : r.top_logprobs[i])  // best first: two tokens of one text keep the best
          if (const std::string tt = token_text(id); !top.contains(tt)) top[tt] = lp;
      if (!top.contains(t)) top[t] = r.logprobs[i];
      tops.push_back(std::move(top));
    }
    return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }
  ordered_json content = ordered_json::array();
  for (size_t i = 0; i < n; ++i) {
    const std::string t = token_text(r.tokens[i]);
    ordered_json top = ordered_json::array();
    if (i < r.top_logprobs.size())
      for (const auto& [id, lp] : r.top_logprobs[i]) {
        const std::string tt = token_text(id);
        top.push_back({{"token", tt}, {"logprob", lp}, {"bytes", bytes_of(tt)}});
      }
    content.push_back({{"token", t}, {"logprob", r.logprobs[i]}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

Status Job::run_feed(PreparedFeed& feed, int32_t slots, int32_t max_len, bool block) {
  if (block) progress_->begin_block(slots);
  const auto& cfg = cfg_;
  // Appends `piece` to the text of sequence i; true when a stop string now appears in it (not
  // before min_tokens tokens). The text ends before the stop string, or after it with
  // include_stop_str_in_output.
  auto append_and_check = [&](size_t i, const std::string& piece) {
    const Prepared& p = feed.live(i).p;
    Running& st = feed.live(i).run;
    if (piece.empty()) return false;
    const size_t from = st.text.size() >= st.max_stop ? st.text.size() - st.max_stop + 1 : 0;
    st.text += piece;
    if (st.generated < p.gen.min_tokens) return false;
    size_t cut = std::string::npos, cut_len = 0;
    for (const auto& s : p.stop)
      if (const size_t at = st.text.find(s, from > 0 ? from - 1 : 0); at < cut) {
        cut = at;
        cut_len = s.size();
      }
    if (cut == std::string::npos) return false;
    st.text.resize(p.include_stop ? cut + cut_len : cut);
    st.stopped = true;
    return true;
  };
  auto on_token = [&](size_t i, int32_t token) {
    progress_->tokens_generated(1);
    PreparedFeed::Live& l = feed.live(i);
    progress_->block_step(++l.run.generated);
    if (!block) progress_->running(static_cast<int64_t>(feed.running()), slots);
    progress_->tick();
    if (!l.p.gen.ignore_eos && cfg.is_eos(token)) return true;  // ends it; its text is not part of the output
    const auto& ids = l.p.gen.stop_token_ids;
    if (std::find(ids.begin(), ids.end(), token) != ids.end()) return true;  // the same
    return !append_and_check(i, l.run.decoder->push(token));
  };
  Status write_status = Status::ok();
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  auto on_finish = [&](size_t i, const GenerationResult& r) {
    struct Release {
      PreparedFeed& feed;
      size_t i;
      ~Release() { feed.finished(i); }
    } release{feed, i};
    if (!write_status.is_ok()) return;
    const Prepared& p = feed.live(i).p;
    Running& st = feed.live(i).run;
    if (r.finish == FinishReason::kError) {  // no answer: an error line of the job's scope
      const auto& req = p.req;
      const std::string who = "line " + std::to_string(req.line) + " (custom_id '" + req.custom_id + "')";
      write_status = finish_choice(p, std::nullopt, text::RequestError{"non_finite_logits", who + ": " + r.error, true},
                                   created);
      return;
    }
    if (!st.stopped) append_and_check(i, st.decoder->flush());
    text::CompletionResult res;
    const auto& req = p.req;
    if (req.echo)  // the prompt as given: its text, or its token ids decoded
      res.text = req.prompt ? *req.prompt : tok_.decode(*req.prompt_ids, /*skip_special_tokens=*/true);
    res.text += st.text;
    res.finish_reason = st.stopped ? "stop" : finish_reason_name(r.finish);
    if (r.constraint_incomplete && !st.stopped && constraint_cut_++ == 0)
      log_.warn("line " + std::to_string(req.line) + " (custom_id '" + req.custom_id + "'): max_tokens (" +
                std::to_string(p.gen.max_new_tokens) + ") came before the answer's " +
                p.gen.constraint->name() +
                " was complete: its finish_reason is \"length\" and its text is only the beginning of a valid "
                "answer; raise max_tokens (the job's end counts every such answer)");
    res.prompt_tokens = static_cast<int64_t>(p.gen.prompt.size());
    res.completion_tokens = static_cast<int64_t>(r.tokens.size());
    if (p.req.logprobs) res.logprobs = logprobs_json(p, r, res.text);
    write_status = finish_choice(p, std::move(res), std::nullopt, created);
  };
  Generator gen(*model_);
  gen.set_interrupt(o_.interrupted);
  GenerationStats stats;
  const Status ran = gen.run(feed, slots, max_len, &stats, on_finish, on_token);
  ++sum_.blocks;
  sum_.refills += stats.refills;
  sum_.prefill_s += stats.prefill_s;
  sum_.decode_s += stats.decode_s;
  if (!ran.is_ok()) return ran.with_context("generating with " + std::to_string(slots) + " sequences at once");
  return write_status;
}

Status Job::run_block(std::span<Prepared> block) {
  int32_t max_len = 0;
  for (const auto& p : block)
    max_len = std::max<int32_t>(max_len, static_cast<int32_t>(p.gen.prompt.size()) + p.gen.max_new_tokens);
  PreparedFeed feed({std::make_move_iterator(block.begin()), std::make_move_iterator(block.end())}, nullptr, tok_);
  return run_feed(feed, static_cast<int32_t>(block.size()), max_len, /*block=*/true);
}


Status Job::block_done() {
  if (!o_.after_block) return Status::ok();
  STRATA_ASSIGN_OR_RETURN(ModelSwitch next, o_.after_block(sum_.blocks));
  if (next.model) {
    model_ = next.model;
    batch_size_ = std::max(1, next.batch_size);
  }
  return Status::ok();
}

namespace {

// The longest answers first, so a run's last steps are not one long answer's alone.
void longest_first(std::vector<Prepared>& v) {
  std::stable_sort(v.begin(), v.end(),
                   [](const Prepared& a, const Prepared& b) { return a.gen.max_new_tokens > b.gen.max_new_tokens; });
}

int32_t longest_sequence(std::span<const Prepared> v) {
  int32_t n = 0;
  for (const auto& p : v) n = std::max<int32_t>(n, static_cast<int32_t>(p.gen.prompt.size()) + p.gen.max_new_tokens);
  return n;
}

}  // namespace

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

Status Job::run_continuous(text::LineReader& reader) {
  std::vector<Prepared> window;
  bool more = true;
  STRATA_RETURN_IF_ERROR(read_requests(reader, window, &more));
  longest_first(window);
  // An eighth of the first slots go to the window's shortest answers, so the first results are
  // written within the first steps rather than after the longest answers.
  const size_t quick = std::min(window.size() / 2, static_cast<size_t>(batch_size_) / 8);
  std::rotate(window.begin(), window.end() - static_cast<std::ptrdiff_t>(quick), window.end());
  // The job's first block runs alone when after_block looks at it (recalibration compares that
  // block with the plan's prediction for a block).
  if (o_.after_block && sum_.blocks == 0 && static_cast<int64_t>(window.size()) > batch_size_) {
    std::vector<Prepared> rest(std::make_move_iterator(window.begin() + batch_size_), std::make_move_iterator(window.end()));
    window.resize(static_cast<size_t>(batch_size_));
    STRATA_RETURN_IF_ERROR(run_block(window));
    STRATA_RETURN_IF_ERROR(block_done());
    window = std::move(rest);
  }
  if (o_.max_sequence_len > 0) {
    // Every slot is made for the longest sequence the job allows: one run takes the whole input,
    // window after window, and only the job's end leaves slots empty.
    if (window.empty() && !more) return Status::ok();
    auto next_window = [&](std::vector<Prepared>& out) -> Result<bool> {
      if (!more) return false;
      STRATA_RETURN_IF_ERROR(read_requests(reader, out, &more));
      longest_first(out);
      return more;
    };
    PreparedFeed feed(std::move(window), next_window, tok_);
    STRATA_RETURN_IF_ERROR(run_feed(feed, batch_size_, static_cast<int32_t>(o_.max_sequence_len), /*block=*/false));
    return block_done();
  }
  // Otherwise a run per window, its slots made for the window's longest sequence.
  for (;;) {
    if (!window.empty()) {
      const int32_t max_len = longest_sequence(window);
      const int32_t slots = std::min<int32_t>(batch_size_, static_cast<int32_t>(window.size()));
      PreparedFeed feed(std::move(window), nullptr, tok_);
      STRATA_RETURN_IF_ERROR(run_feed(feed, slots, max_len, /*block=*/false));
      STRATA_RETURN_IF_ERROR(block_done());
    }
    window.clear();
    if (!more) return Status::ok();
    STRATA_RETURN_IF_ERROR(read_requests(reader, window, &more));
    longest_first(window);
  }
}

Status Job::run_window(std::vector<Prepared>& window) {
  // Similar prompt lengths share a block, so the block's KV cache and work pad little.
  std::stable_sort(window.begin(), window.end(),
                   [](const Prepared& a, const Prepared& b) { return a.gen.prompt.size() < b.gen.prompt.size(); });
  for (size_t b = 0; b < window.size();) {
    if (interrupted()) return cancelled("interrupted");
    const size_t bs = std::min(static_cast<size_t>(batch_size_), window.size() - b);
    STRATA_RETURN_IF_ERROR(run_block(std::span<Prepared>(window).subspan(b, bs)));
    b += bs;
    STRATA_RETURN_IF_ERROR(block_done());
  }
  window.clear();
  return Status::ok();
}

// The chat template: the model's own, or --chat-template's family or file. Its warnings are
// logged by run() (scan() chooses it too, before run(), and stays quiet).
Status Job::init_chat(bool warn) {
  std::vector<std::string> warnings;
  STRATA_ASSIGN_OR_RETURN(chat_template_,
                          text::ChatTemplate::choose(tok_, o_.chat_template, warnings));
  if (warn)
    for (const auto& w : warnings) log_.warn(w);
  return Status::ok();
}

Result<JobShape> Job::scan() {
  if (o_.input == "-")
    return invalid_argument("standard input cannot be read twice to plan the job; give --max-prompt-len");
  STRATA_RETURN_IF_ERROR(init_chat(/*warn=*/false));
  JobShape shape;
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o_.input));
  std::string line;
  for (;;) {
    STRATA_ASSIGN_OR_RETURN(bool more, reader->next(line));
    if (!more) break;
    if (is_blank(line)) continue;
    if (o_.shard.sharded()) {
      const std::optional<std::string> id = request_custom_id(line);
      if (!id || !o_.shard.owns(*id)) continue;
    }
    text::ParsedLine parsed =
        text::parse_request_line(line, reader->line_number(), {.ignore_unknown_fields = o_.ignore_unknown_fields});
    if (!parsed.request || !seen_ids_.insert(parsed.request->custom_id).second) continue;
    Prepared p;
    p.req = std::move(*parsed.request);
    if (prepare(p)) continue;  // an error line, not work
    const int64_t prompt = static_cast<int64_t>(p.gen.prompt.size());
    shape.requests += p.req.n;
    shape.max_prompt_tokens = std::max(shape.max_prompt_tokens, prompt);
    shape.max_new_tokens = std::max<int64_t>(shape.max_new_tokens, p.gen.max_new_tokens);
    shape.max_sequence_len = std::max<int64_t>(shape.max_sequence_len, prompt + p.gen.max_new_tokens);
    for (int32_t i = 0; i < p.req.n; ++i) shape.lengths.emplace_back(prompt, p.gen.max_new_tokens);
  }
  log_.info("planning for " + std::to_string(shape.requests) + " requests of " + o_.input + ": prompts up to " +
            std::to_string(shape.max_prompt_tokens) + " tokens, max_tokens up to " +
            std::to_string(shape.max_new_tokens));
  return shape;
}

// Opens the output: replaced with --overwrite; with --resume checked against the job that wrote
// it and trimmed to what it answers; the job file written beside it. Sets `total` to the requests
// of the input (0 for standard input), for the progress bar.
Status Job::open_output(int64_t& total) {
  std::error_code ec;
  if (o_.overwrite && !o_.resume && o_.output != "-" && fs::exists(o_.output, ec)) {
    fs::resize_file(o_.output, 0, ec);
    if (ec) return io_error(o_.output + ": cannot truncate: " + ec.message(), ec.value());
  }
  JobIdentity now;
  STRATA_ASSIGN_OR_RETURN(now.input, fingerprint_input(o_.input, o_.shard));
  now.answers = answer_settings(o_, tok_);
  total = now.input.requests;
  if (o_.shard.sharded()) {
    if (now.input.first_line_without_id > 0)
      return invalid_argument(o_.input + ":" + std::to_string(now.input.first_line_without_id) +
                              ": this line has no custom_id (a string), and --shard " + o_.shard.to_string() +
                              " splits the job by custom_id; give every request a custom_id, or run the job "
                              "without --shard");
    total = now.input.shard_requests;
    sum_.shard = o_.shard;
    sum_.shard_requests = now.input.shard_requests;
    sum_.input_requests = now.input.requests;
    log_.info("shard " + o_.shard.to_string() + ": " + std::to_string(now.input.shard_requests) + " of the " +
              std::to_string(now.input.requests) + " requests of " + o_.input + ", written to " + o_.output);
  }
  if (o_.output == "-") {  // standard output: nothing to resume, no job file beside it
    STRATA_ASSIGN_OR_RETURN(writer_, text::RecordWriter::open(o_.output));
    return Status::ok();
  }
  const bool has_output = fs::exists(o_.output, ec) && fs::file_size(o_.output, ec) > 0;
  if (o_.resume && has_output) {
    STRATA_ASSIGN_OR_RETURN(resume_, prepare_resume(o_.output, now, o_.resume_anyway, log_));
    sum_.retried = resume_.retried;
  }
  // The job file says who writes this output; a resumed job with a different identity (allowed
  // with --resume-anyway) records the new one.
  STRATA_RETURN_IF_ERROR(write_job_file(o_.output, now));
  STRATA_ASSIGN_OR_RETURN(writer_, text::RecordWriter::open(o_.output));
  return Status::ok();
}

Result<BatchSummary> Job::run() {
  const auto t0 = std::chrono::steady_clock::now();
  started_ = o_.started.value_or(t0);
  model_name_ = o_.model_name;
  STRATA_RETURN_IF_ERROR(init_chat(/*warn=*/true));
  int64_t total = 0;
  STRATA_RETURN_IF_ERROR(open_output(total));
  progress_ = std::make_unique<Progress>(o_.progress, std::max<int64_t>(0, total - resume_.answered));
  STRATA_ASSIGN_OR_RETURN(auto reader, text::LineReader::open(o_.input));
  Status status = Status::ok();
  if (o_.continuous) {
    status = run_continuous(*reader);
  } else {
    std::vector<Prepared> window;
    for (bool more = true; status.is_ok() && more;) {
      status = read_requests(*reader, window, &more);
      if (status.is_ok()) status = run_window(window);
    }
  }
  if (status.is_ok())
    STRATA_CHECK(order_.empty() && ready_.empty(), "--ordered: a result was never written");
  // Whatever happened, what was written is made durable before returning.
  Status synced = writer_->sync();
  progress_->finish();
  STRATA_RETURN_IF_ERROR(status);
  STRATA_RETURN_IF_ERROR(synced);
  if (constraint_cut_ > 0)
    log_.warn(std::to_string(constraint_cut_) + " structured-output answers stopped at max_tokens before their value "
              "was complete (finish_reason \"length\"); raise max_tokens for them");
  sum_.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sum_.peak_rss_bytes = static_cast<int64_t>(peak_rss_bytes());
  return sum_;
}

}  // namespace

Status check_job_options(const BatchJobOptions& o) {
  auto bad = [](const char* flag, const std::string& allowed, const std::string& got) {
    return invalid_argument(std::string(flag) + " must be " + allowed + " (got " + got + ")");
  };
  if (o.batch_size < 1) return bad("--batch-size", "an integer >= 1", std::to_string(o.batch_size));
  if (o.window < 1) return bad("--window", "an integer >= 1", std::to_string(o.window));
  if (o.max_tokens < 1) return bad("--max-tokens", "an integer >= 1", std::to_string(o.max_tokens));
  if (!std::isfinite(o.temperature) || o.temperature < 0 || o.temperature > 1e6f)
    return bad("--temperature", "a number in [0, 1e6] (0 = greedy)", std::to_string(o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1)) return bad("--top-p", "a number in (0, 1] (1 = no limit)", std::to_string(o.top_p));
  if (o.top_k < 0) return bad("--top-k", "an integer >= 0 (0 = no limit)", std::to_string(o.top_k));
  for (const std::string& stop : o.stop)
    if (stop.empty()) return invalid_argument("--stop must not be an empty string");
  if (!std::isfinite(o.progress.interval_s) || o.progress.interval_s <= 0)
    return bad("--progress-interval", "a number of seconds > 0", std::to_string(o.progress.interval_s));
  return Status::ok();
}

Status check_batch_files(const BatchJobOptions& o) {
  if (o.input.empty()) return invalid_argument("--input is required");
  if (o.resume_anyway && !o.resume) return invalid_argument("--resume-anyway needs --resume");
  if (o.output.empty()) return invalid_argument("--output is required");
  if (o.output == "-" && o.resume)
    return invalid_argument("--resume cannot continue --output - (standard output): there is no earlier output to "
                            "read; write to a file to be able to resume");
  if (o.input != "-") {
    std::error_code ec;
    if (!fs::exists(o.input, ec)) return not_found(o.input + ": the input file does not exist");
    if (fs::is_directory(o.input, ec)) return invalid_argument(o.input + ": the input is a directory, not a file");
    if (::access(o.input.c_str(), R_OK) != 0) return io_error(o.input + ": the input file is not readable", errno);
    if (o.output != "-" && fs::equivalent(o.input, o.output, ec))
      return invalid_argument("--input and --output name the same file");
  }
  if (o.shard.sharded() && o.input == "-")
    return invalid_argument("--shard needs --input to be a file: every shard reads the whole input and answers its "
                            "own part (standard input can be read by one process only)");
  if (o.shard.sharded() && o.output == "-")
    return invalid_argument("--shard needs --output to be a file: each shard writes OUTPUT.shard-I-of-N beside it");
  if (o.resume && o.overwrite) return invalid_argument("--resume and --overwrite contradict each other; choose one");
  std::error_code ec;
  if (o.output == "-") {
    // Standard output: results there, progress and logs on stderr.
  } else if (fs::exists(o.output, ec)) {
    if (fs::is_directory(o.output, ec)) return invalid_argument(o.output + ": the output is a directory");
    if (!o.resume && !o.overwrite)
      return invalid_argument(o.output + " already exists: pass --resume to continue that job or --overwrite to "
                              "replace it");
    if (::access(o.output.c_str(), W_OK) != 0) return io_error(o.output + ": the output file is not writable", errno);
  } else {
    fs::path parent = fs::path(o.output).parent_path();
    if (parent.empty()) parent = ".";
    if (!fs::is_directory(parent, ec)) return not_found(o.output + ": the directory " + parent.string() + " does not exist");
    if (::access(parent.c_str(), W_OK) != 0)
      return io_error(o.output + ": cannot create the output in " + parent.string() + " (not writable)", errno);
  }
  return check_job_options(o);
}

Result<BatchSummary> run_batch_job(compute::SequenceModel& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log) {
  STRATA_RETURN_IF_ERROR(check_batch_files(options));
  Job job(model.config(), &model, tokenizer, options, log);
  return job.run();
}

Result<BatchSummary> run_batch_job(compute::Transformer& model, const text::Tokenizer& tokenizer,
                                   const BatchJobOptions& options, Logger& log) {
  compute::TransformerModel with_cache(model);  // a KV cache sized for each block at its start
  return run_batch_job(with_cache, tokenizer, options, log);
}

Result<JobShape> scan_batch_job(const model::ModelConfig& config, const text::Tokenizer& tokenizer,
                                const BatchJobOptions& options, Logger& log) {
  Job job(config, nullptr, tokenizer, options, log);
  return job.scan();
}

json BatchSummary::to_json() const {
  const double total_tokens = static_cast<double>(prompt_tokens + completion_tokens);
  return {{"requests", requests},
          {"ok", ok},
          {"failed", failed},
          {"failed_job", failed_job},
          {"errors", errors},
          {"first_errors", first_errors},
          {"retried", retried},
          {"skipped", skipped},
          {"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"blocks", blocks},
          {"refills", refills},
          {"wall_s", wall_s},
          {"prefill_s", prefill_s},
          {"decode_s", decode_s},
          {"output_tokens_per_s", wall_s > 0 ? completion_tokens / wall_s : 0.0},
          {"total_tokens_per_s", wall_s > 0 ? total_tokens / wall_s : 0.0},
          {"requests_per_s", wall_s > 0 ? requests / wall_s : 0.0},
          {"first_result_s", first_result_s >= 0 ? json(first_result_s) : json(nullptr)},
          {"peak_memory_bytes", {{"cpu", peak_rss_bytes},
                                 {"gpu", peak_gpu_bytes >= 0 ? json(peak_gpu_bytes) : json(nullptr)},
                                 {"pinned", pinned_bytes >= 0 ? json(pinned_bytes) : json(nullptr)},
                                 {"disk", disk_bytes >= 0 ? json(disk_bytes) : json(nullptr)}}},
          {"shard", shard.sharded() ? json{{"index", shard.index}, {"count", shard.count},
                                           {"requests", shard_requests}, {"input_requests", input_requests}}
                                    : json(nullptr)}};
}

std::string BatchSummary::to_text() const {
  char buf[1024];
  const double total_tokens = static_cast<double>(prompt_tokens + completion_tokens);
  std::string out;
  if (shard.sharded()) {
    std::snprintf(buf, sizeof(buf), "shard %d/%d: %lld of the input's %lld requests (%.1f%%)\n", shard.index,
                  shard.count, static_cast<long long>(shard_requests), static_cast<long long>(input_requests),
                  input_requests > 0 ? 100.0 * static_cast<double>(shard_requests) / static_cast<double>(input_requests) : 0.0);
    out += buf;
  }
  std::snprintf(buf, sizeof(buf),
                "requests: %lld ok, %lld failed, %lld already done\n"
                "tokens: %lld in, %lld out in %.2f s: %.1f out tok/s, %.1f total tok/s, %.2f requests/s\n"
                "engine: prefill %.2f s (%.1f tok/s), decode %.2f s (%.1f tok/s), %lld blocks, %lld refills\n",
                static_cast<long long>(ok), static_cast<long long>(failed), static_cast<long long>(skipped),
                static_cast<long long>(prompt_tokens), static_cast<long long>(completion_tokens), wall_s,
                wall_s > 0 ? completion_tokens / wall_s : 0.0, wall_s > 0 ? total_tokens / wall_s : 0.0,
                wall_s > 0 ? requests / wall_s : 0.0, prefill_s, prefill_s > 0 ? prompt_tokens / prefill_s : 0.0,
                decode_s, decode_s > 0 ? completion_tokens / decode_s : 0.0, static_cast<long long>(blocks),
                static_cast<long long>(refills));
  out += buf;
  if (first_result_s >= 0) {
    std::snprintf(buf, sizeof(buf), "first result: %.2f s after the start\n", first_result_s);
    out += buf;
  }
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::snprintf(buf, sizeof(buf), "peak memory: cpu %.1f MiB (resident)", mib(peak_rss_bytes));
  out += buf;
  if (peak_gpu_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", gpu %.1f MiB", mib(peak_gpu_bytes));
    out += buf;
  }
  if (pinned_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", pinned %.1f MiB", mib(pinned_bytes));
    out += buf;
  }
  if (disk_bytes >= 0) {
    std::snprintf(buf, sizeof(buf), ", disk %.1f MiB", mib(disk_bytes));
    out += buf;
  }
  out += "\n";
  if (!errors.empty()) {
    // By code: how many, and the first one's message (the others are in the output's error lines).
    out += "errors by code:\n";
    for (const auto& [code, n] : errors) {
      std::string first = first_errors.count(code) ? first_errors.at(code) : "";
      if (first.size() > 200) first = first.substr(0, 197) + "...";
      std::snprintf(buf, sizeof(buf), "  %-20s %6lld  first: %s\n", code.c_str(), static_cast<long long>(n),
                    first.c_str());
      out += buf;
    }
  }
  if (failed_job > 0) {
    out += std::to_string(failed_job);
    out += " requests failed because of a job setting or the model, not their own content (error lines with "
           "\"scope\": \"job\"); fix the setting and run again with --resume to retry just those\n";
  }
  return out;
}

}  // namespace strata::runtime
