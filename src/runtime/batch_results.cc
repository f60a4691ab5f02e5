// Writing the job's results: each request's record once its choices are in (in input order with
// --ordered), its error line, and its log-probabilities as OpenAI and vLLM give them.
#include "runtime/batch_job_impl.h"

#include <string>

namespace strata::runtime::batch {

using nlohmann::ordered_json;

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
  progress_->request_done(prompt, completion, static_cast<int64_t>(req.n) * p.gen.max_new_tokens - completion);
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

}  // namespace strata::runtime::batch
