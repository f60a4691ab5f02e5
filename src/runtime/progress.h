// Progress of a batch job on stderr: a live bar redrawn in place on a terminal, or a plain line
// every few seconds otherwise (logs, CI). Shows requests done, the running block and its decode
// step, the time elapsed, input and output tokens/s and the ETA: from the requests done once
// there are some, before that from the plan's prediction when there is one. Owned by the batch
// job; not thread safe. Times are seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace strata::runtime {

struct ProgressOptions {
  bool quiet = false;
  bool live = false;           // redraw one line in place (stderr is a terminal)
  double interval_s = 5.0;     // between plain lines
  double predicted_job_s = 0;  // the plan's time for the whole job (0: none; the ETA waits for requests)
  std::FILE* out = stderr;
  std::string label;           // before the counts, e.g. "shard 3/8" ("" = none)
};

class Progress {
 public:
  Progress(const ProgressOptions& options, int64_t total_requests);

  // A request was read: its choices' max_tokens in all (0 for a line that became an error).
  void request_read(int64_t max_new_tokens);
  // A request finished (ok or not) with these token counts; `unused_new_tokens` of its max_tokens
  // will never be generated (it stopped early).
  void request_done(int64_t prompt_tokens, int64_t completion_tokens, int64_t unused_new_tokens = 0);
  // Generated tokens of requests still running, so the rate moves between completions.
  void tokens_generated(int64_t n);
  // A block of `requests` starts; its decode step is the most tokens any of them has generated.
  void begin_block(int64_t requests);
  void block_step(int64_t step);
  // Continuous batching: `running` sequences in `slots` (shown instead of the block; slots 0:
  // paged KV, as many as their lengths fit).
  void running(int64_t running, int64_t slots);
  // Redraws when due; cheap to call often.
  void tick();
  // Ends the live line.
  void finish();

  int64_t done() const { return done_; }
  double elapsed_s() const;
  // The time left after `elapsed` seconds: the tokens still to generate at the rate so far, the
  // requests not read yet counted at the mean max_tokens of those read (requests finish longest
  // answers first, so their count says little); before any token, the plan's time left.
  double eta_s(double elapsed) const;

 private:
  void draw(bool force);

  ProgressOptions o_;
  int64_t total_;
  int64_t done_ = 0;
  int64_t in_tokens_ = 0;
  int64_t out_tokens_ = 0;
  int64_t read_ = 0, read_new_tokens_ = 0, unused_new_tokens_ = 0;
  int64_t block_ = 0, block_requests_ = 0, step_ = 0;
  int64_t running_ = -1, slots_ = 0;  // continuous batching (running_ >= 0)
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

// "1h02m", "3m05s", "42s".
void format_duration(double seconds, char* buf, size_t size);

}  // namespace strata::runtime
