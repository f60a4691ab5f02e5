// The batch job's insides, shared by its files: a request prepared for the engine, the feed that
// hands the job's requests to the Generator, and the Job that reads the input (batch_requests.cc),
// schedules the requests (batch_schedule.cc), writes the results (batch_results.cc) and opens,
// scans and runs the whole job (batch_job.cc). Internal to src/runtime. Not thread safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/batch_job.h"
#include "runtime/generator.h"
#include "runtime/resume.h"
#include "text/batch_request.h"
#include "text/chat_template.h"
#include "text/constraint.h"
#include "text/incremental_decoder.h"
#include "text/line_io.h"

namespace strata::runtime::batch {

// True for a line of spaces, tabs and carriage returns only (skipped, not a request).
bool is_blank(const std::string& s);

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

  // `look` runs once, before the request handed out after the first `handed` (kAfterDecoding:
  // the first handed out after the first decode step, which takes a finished sequence's room);
  // true stops the feed: next() hands out no more, and the requests not started stay for
  // take_queue() and take_more().
  static constexpr size_t kAfterDecoding = SIZE_MAX;
  void look_before(size_t handed, std::function<Result<bool>()> look) {
    look_at_ = handed;
    look_ = std::move(look);
  }
  void decoding_started() override {
    if (look_ && look_at_ == kAfterDecoding) look_at_ = next_;
  }
  bool stopped() const { return stopped_; }
  std::vector<Prepared> take_queue() {
    std::vector<Prepared> v(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
    queue_.clear();
    return v;
  }
  More take_more() { return std::move(more_); }

  Result<const GenerationRequest*> peek() override {
    if (stopped_) return nullptr;
    if (queue_.empty() && more_) {
      std::vector<Prepared> batch;
      STRATA_ASSIGN_OR_RETURN(bool again, more_(batch));
      if (!again) more_ = nullptr;
      for (auto& p : batch) queue_.push_back(std::move(p));
    }
    return queue_.empty() ? nullptr : &queue_.front().gen;
  }
  Result<const GenerationRequest*> next() override {
    STRATA_ASSIGN_OR_RETURN(const GenerationRequest* ahead, peek());
    if (!ahead) return nullptr;
    if (look_ && next_ == look_at_) {
      auto look = std::move(look_);
      look_ = nullptr;
      STRATA_ASSIGN_OR_RETURN(stopped_, look());
      if (stopped_) return nullptr;
    }
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
  size_t next_ = 0;  // requests handed out
  std::function<Result<bool>()> look_;
  size_t look_at_ = 0;
  bool stopped_ = false;
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
  // `paged`: the KV rows of `slots` x `max_len` given to each request for its own length where
  // the model can (Generator::set_paged).
  Status run_feed(PreparedFeed& feed, int32_t slots, int32_t max_len, bool block, bool paged = false);
  Status block_done();  // after_block, and the model it switches to
  // Arms the feed of a continuous run with look_in_first_run (before the first request that
  // takes a finished sequence's room), once a job.
  void look_in_run(PreparedFeed& feed);
  bool looked_ = false;
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

}  // namespace strata::runtime::batch
