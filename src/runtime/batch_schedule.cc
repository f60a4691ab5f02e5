// Running the job's requests: fixed blocks of similar prompt length, or continuous runs where a
// finished sequence's slot is taken by the next request; each run's tokens become text, checked
// for stop strings, and its finished sequences become results.
#include "runtime/batch_job_impl.h"

#include <algorithm>
#include <ctime>
#include <numeric>
#include <string>

namespace strata::runtime::batch {

Status Job::run_feed(PreparedFeed& feed, int32_t slots, int32_t max_len, bool block, bool paged) {
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
    if (!block) progress_->running(static_cast<int64_t>(feed.running()), paged ? 0 : slots);
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
  gen.set_prompt_chunk(o_.prompt_chunk);
  gen.set_paged(paged);
  GenerationStats stats;
  const Status ran = gen.run(feed, slots, max_len, &stats, on_finish, on_token);
  ++sum_.blocks;
  sum_.refills += stats.refills;
  sum_.prefill_s += stats.prefill_s;
  sum_.decode_s += stats.decode_s;
  sum_.steps += stats.steps;
  sum_.step_tokens += stats.step_tokens;
  sum_.sampled_rows += stats.sampled_rows;
  sum_.model_s += stats.model_s;
  sum_.mask_wait_s += stats.mask_wait_s;
  sum_.choose_s += stats.choose_s;
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

// Moves out of `window` the `n` requests in the middle of its answer lengths (max_new_tokens),
// in the window's order; the rest stay in theirs.
std::vector<Prepared> take_middle_answers(std::vector<Prepared>& window, size_t n) {
  std::vector<size_t> by_length(window.size());
  std::iota(by_length.begin(), by_length.end(), size_t{0});
  std::stable_sort(by_length.begin(), by_length.end(), [&](size_t a, size_t b) {
    return window[a].gen.max_new_tokens < window[b].gen.max_new_tokens;
  });
  std::vector<bool> taken(window.size(), false);
  const size_t from = (window.size() - n) / 2;
  for (size_t k = from; k < from + n; ++k) taken[by_length[k]] = true;
  std::vector<Prepared> middle, rest;
  for (size_t i = 0; i < window.size(); ++i) (taken[i] ? middle : rest).push_back(std::move(window[i]));
  window = std::move(rest);
  return middle;
}

int32_t longest_sequence(std::span<const Prepared> v) {
  int32_t n = 0;
  for (const auto& p : v) n = std::max<int32_t>(n, static_cast<int32_t>(p.gen.prompt.size()) + p.gen.max_new_tokens);
  return n;
}

}  // namespace

void Job::look_in_run(PreparedFeed& feed) {
  if (!o_.look_in_first_run || looked_) return;
  looked_ = true;
  feed.look_before(PreparedFeed::kAfterDecoding, o_.look_in_first_run);
}

Status Job::run_continuous(text::LineReader& reader) {
  std::vector<Prepared> window;
  bool more = true;
  STRATA_RETURN_IF_ERROR(read_requests(reader, window, &more));
  // The job's first block runs alone when after_block looks at it and cannot look inside a run
  // (recalibration compares that block with the plan's prediction for a block). It takes the
  // window's middle answer lengths: a block runs until its longest answer, so similar lengths
  // leave few slots idle, and its steps are the job's typical ones.
  if (o_.after_block && !o_.look_in_first_run && sum_.blocks == 0 &&
      static_cast<int64_t>(window.size()) > batch_size_) {
    std::vector<Prepared> first = take_middle_answers(window, static_cast<size_t>(batch_size_));
    STRATA_RETURN_IF_ERROR(run_block(first));
    STRATA_RETURN_IF_ERROR(block_done());
  }
  longest_first(window);
  // An eighth of the first slots go to the window's shortest answers, so the first results are
  // written within the first steps rather than after the longest answers.
  const size_t quick = std::min(window.size() / 2, static_cast<size_t>(batch_size_) / 8);
  std::rotate(window.begin(), window.end() - static_cast<std::ptrdiff_t>(quick), window.end());
  if (o_.max_sequence_len > 0) {
    // The KV made for batch_size_ sequences of the longest length the job allows is given to each
    // request for its own prompt + max_tokens (paged), so shorter requests run more at once: one
    // run takes the whole input, window after window, and only the job's end leaves room unused
    // (or a switch of model that the look inside the first run asks for: the requests not started
    // go on on the new model).
    if (window.empty() && !more) return Status::ok();
    PreparedFeed::More next_window = [&](std::vector<Prepared>& out) -> Result<bool> {
      if (!more) return false;
      STRATA_RETURN_IF_ERROR(read_requests(reader, out, &more));
      longest_first(out);
      return more;
    };
    std::vector<Prepared> queue = std::move(window);
    for (;;) {
      PreparedFeed feed(std::move(queue), std::move(next_window), tok_);
      look_in_run(feed);
      STRATA_RETURN_IF_ERROR(
          run_feed(feed, batch_size_, static_cast<int32_t>(o_.max_sequence_len), /*block=*/false, /*paged=*/true));
      STRATA_RETURN_IF_ERROR(block_done());
      if (!feed.stopped()) return Status::ok();
      queue = feed.take_queue();
      next_window = feed.take_more();
    }
  }
  // Otherwise a run per window, its slots made for the window's longest sequence.
  for (;;) {
    if (!window.empty()) {
      const int32_t max_len = longest_sequence(window);
      const int32_t slots = std::min<int32_t>(batch_size_, static_cast<int32_t>(window.size()));
      PreparedFeed feed(std::move(window), nullptr, tok_);
      look_in_run(feed);
      STRATA_RETURN_IF_ERROR(run_feed(feed, slots, max_len, /*block=*/false));
      STRATA_RETURN_IF_ERROR(block_done());
      window = feed.take_queue();  // what a switch of model left unstarted
      if (!window.empty()) continue;
    }
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

}  // namespace strata::runtime::batch
