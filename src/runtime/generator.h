// Generator: runs requests through a Transformer: a ragged prefill of the prompts, then decode
// steps over the sequences still running; with fewer slots than requests (set_slots), waiting
// requests take the slots of finished sequences. A sequence stops at an EOS token of the
// model (unless ignore_eos) or after max_new_tokens, and then leaves the batch; a sequence whose
// logits hold a NaN or an infinity ends with FinishReason::kError and says so. Not thread safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/thread_pool.h"
#include "compute/sequence_model.h"
#include "compute/transformer.h"
#include "runtime/sampling.h"
#include "text/constraint.h"
#include "text/token_mask.h"
#include "text/token_trie.h"

namespace strata::runtime {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 256;
  SamplingParams sampling;
  bool ignore_eos = false;
  int32_t top_logprobs = 0;  // alternatives (token, logprob) to report per generated token
  std::vector<int32_t> stop_token_ids;  // end the sequence as an EOS does
  int32_t min_tokens = 0;  // before this many tokens, neither an EOS nor a stop token is chosen
  // Changes to the logits before the choice, as OpenAI and vLLM define them: presence and
  // frequency penalties over the generated tokens, the repetition penalty over the prompt's and
  // the generated tokens (positive logits divided by it, negative ones multiplied), a bias per
  // token, and min_p (tokens less likely than min_p times the likeliest are left out). The
  // reported logprobs stay the model's.
  float presence_penalty = 0, frequency_penalty = 0, repetition_penalty = 1, min_p = 0;
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Structured output: each token must continue the constraint's text (JSON object, JSON Schema,
  // regex, choice), its bytes read from `trie` (the model's vocabulary); an end token (EOS or a
  // stop token) is allowed only once the text is complete, and the sequence ends by itself when
  // nothing may follow. Null: free text.
  std::shared_ptr<const text::Constraint> constraint;
  std::shared_ptr<const text::TokenTrie> trie;
  bool adjusts_logits() const { return adjusts_beyond_constraint() || constraint != nullptr; }
  bool adjusts_beyond_constraint() const {
    return presence_penalty != 0 || frequency_penalty != 0 || repetition_penalty != 1 || min_p > 0 ||
           !logit_bias.empty();
  }
};

// The tokens a constraint allows next, a bit each (token t: bit t % 64 of words[t / 64]): those
// whose bytes continue the text; and whether the text is complete (then the end tokens are
// allowed too).
struct AllowedTokens {
  std::vector<uint64_t> words;
  bool complete = false;
  // From one byte a token, each 0 or 1 (TokenMasker::allowed's form).
  static AllowedTokens from_bytes(std::span<const uint8_t> allowed, bool complete);
  bool allows(int64_t t) const {
    const auto w = static_cast<size_t>(t >> 6);
    return t >= 0 && w < words.size() && ((words[w] >> (t & 63)) & 1) != 0;
  }
  int64_t count() const;
  // The words of a vocabulary of `vocab` tokens with, when the text is complete, the end tokens
  // `ends` (those below `vocab`) allowed too.
  std::vector<uint64_t> with_ends(std::span<const int32_t> ends, int64_t vocab) const;
};

// Allowed sets by (constraint, state): inside a string the state repeats token after token, and
// requests sharing a constraint share its states. Bounded to about 64 MiB of sets, 8 tokens a byte
// (past that, the cache starts again). fill() computes a step's missing sets on `threads` threads (0: one per
// core), each a walk of the token trie through the (constraint, trie) pair's TokenMasker, which
// shares the walks' subtrees between states that differ only in a count.
class ConstraintMaskCache {
 public:
  explicit ConstraintMaskCache(int threads = 0) : threads_(threads) {}
  struct Want {
    const text::TokenTrie* trie;
    const text::Constraint* constraint;
    const text::ConstraintState* state;
  };
  // The sets of `wants`, in order, those not cached yet computed in parallel. They stay valid until
  // the next fill() or get().
  std::vector<const AllowedTokens*> fill(std::span<const Want> wants);
  // `state`'s allowed set over `trie`, computed once per (constraint, state) while cached.
  const AllowedTokens& get(const text::TokenTrie& trie, const text::Constraint& constraint,
                           const text::ConstraintState& state);
  size_t size() const { return sets_.size(); }
  int64_t misses() const { return misses_; }  // sets computed (trie walks) so far

 private:
  // The state's key: its class key (TokenMasker::mask_key), so that states allowing the same
  // tokens share one set, else the state's own bytes.
  std::string key_of(const text::TokenTrie& trie, const text::Constraint& constraint, const text::ConstraintState& state);
  size_t limit(const text::TokenTrie& trie) const;
  const text::TokenMasker& masker(const text::TokenTrie& trie, const text::Constraint& constraint);

  std::unordered_map<std::string, AllowedTokens> sets_;
  std::map<std::pair<const text::Constraint*, const text::TokenTrie*>, std::unique_ptr<text::TokenMasker>> maskers_;
  int64_t misses_ = 0;
  int threads_ = 0;
  std::unique_ptr<ThreadPool> pool_;  // made when a fill first has two sets to compute
};

enum class FinishReason { kStop, kLength, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "error"

struct GenerationResult {
  std::vector<int32_t> tokens;   // generated tokens, the EOS that stopped it included
  std::vector<float> logprobs;   // log-probability of each generated token
  // Per generated token, the request's top_logprobs most likely (token, logprob), best first.
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;
  FinishReason finish = FinishReason::kLength;
  std::string error;  // kError: what went wrong, at which generated token
  // kLength with a constraint: max_new_tokens came before the constrained text was complete.
  bool constraint_incomplete = false;
};

struct GenerationStats {
  double prefill_s = 0;
  double decode_s = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int32_t decode_steps = 0;
  int32_t refills = 0;  // steps that gave waiting requests the slots of finished ones
  // A decode step that starts sequences too (mixed steps) counts as decode in prefill_s/decode_s.
  // Where the steps' time went: every step the model ran (prompt steps included), the tokens they
  // took and the rows they sampled; the model's own time (until its logits were computed), the
  // wait for the constrained sequences' allowed sets after it, and choosing the tokens.
  int64_t steps = 0;
  int64_t step_tokens = 0;
  int64_t sampled_rows = 0;
  double model_s = 0;
  double mask_wait_s = 0;
  double choose_s = 0;
};

// Hands the Generator its requests one at a time, as slots free up.
class RequestFeed {
 public:
  virtual ~RequestFeed() = default;
  // The next request, or null when there are no more. The request must stay valid until the
  // Generator's FinishCallback for it has returned.
  virtual Result<const GenerationRequest*> next() = 0;
  // The request next() would hand out, not handed yet (null when there is none); valid until
  // the next call.
  virtual Result<const GenerationRequest*> peek() = 0;
  // The first decode step has run (the requests handed out after it take rooms that running
  // sequences left, or that the first prompt steps did not fill).
  virtual void decoding_started() {}
};

class Generator {
 public:
  // Drives a Transformer with a KV cache on its backend, or any SequenceModel (the offloading
  // engine). The model must outlive the Generator.
  explicit Generator(compute::Transformer& model)
      : owned_(std::make_unique<compute::TransformerModel>(model)), model_(*owned_) {}
  explicit Generator(compute::SequenceModel& model) : model_(model) {}

  // Called once per request as soon as it finishes, with its index in `requests`.
  using FinishCallback = std::function<void(size_t, const GenerationResult&)>;
  // Called for every generated token of request `index` (EOS included) before the stop checks;
  // returning false ends that sequence with FinishReason::kStop (e.g. a stop string appeared).
  using TokenCallback = std::function<bool(size_t index, int32_t token)>;

  // At most `slots` sequences at once (0, the default: every request of a generate() call at
  // once, a fixed block). With fewer slots than requests, the first requests fill the slots and
  // each later one takes the slot of a finished sequence: its prompt rides in the next decode step
  // where the model takes mixed steps (SequenceModel::mixed_steps), else in a prompt step of its
  // own once planner::refill_threshold() slots are free. Requests are admitted in order.
  void set_slots(int32_t slots) { slots_ = slots; }

  // The prompt tokens a mixed decode step carries beside its running sequences' tokens
  // (kDefaultPromptChunk unless set; 0: whole prompts; either way within the model's
  // SequenceModel::mixed_step_prompt_tokens). A longer joining prompt enters its slot's
  // cache a chunk a step and its first token is chosen after its last chunk, so a long prompt
  // does not hold up the running sequences' step. Prompt steps of their own (the first step, and
  // models without mixed steps) take whole prompts.
  static constexpr int32_t kDefaultPromptChunk = 2048;
  void set_prompt_chunk(int32_t tokens) { prompt_chunk_ = tokens; }

  // With `paged`, run() asks the model for a KV cache cut into pages (SequenceModel::reset_paged,
  // kPageLen positions each, the rows of `slots` slots of `max_len`), and each request takes as
  // many pages as its prompt + max_new_tokens need rather than a slot of the longest length: a
  // job of mixed lengths then runs as many sequences at once as their own lengths fit, beyond
  // `slots`. A model without paged KV keeps a slot per sequence.
  static constexpr int32_t kPageLen = 16;
  void set_paged(bool paged) { paged_ = paged; }

  // generate() stops between steps with kCancelled once `*flag` is true.
  void set_interrupt(const std::atomic<bool>* flag) { interrupt_ = flag; }

  // Errors name the request (by index) whose prompt is empty, holds an unknown token or does not
  // fit the model's context.
  Result<std::vector<GenerationResult>> generate(std::span<const GenerationRequest> requests,
                                                 GenerationStats* stats = nullptr,
                                                 const FinishCallback& on_finish = {},
                                                 const TokenCallback& on_token = {});

  // Runs the feed's requests `slots` at a time until it has no more, each finished sequence's
  // slot taken by the next request (see set_slots), every slot made for `max_len` positions (a
  // request needing more is an error). The callbacks' indexes count the feed's requests from 0;
  // results go only to on_finish.
  Status run(RequestFeed& feed, int32_t slots, int32_t max_len, GenerationStats* stats,
             const FinishCallback& on_finish, const TokenCallback& on_token = {});

 private:
  // `r`, the feed's `index`-th request, against the model (and `max_len` positions when > 0).
  Status validate(const GenerationRequest& r, size_t index, int32_t max_len) const;

  std::unique_ptr<compute::SequenceModel> owned_;
  compute::SequenceModel& model_;
  const std::atomic<bool>* interrupt_ = nullptr;
  int32_t slots_ = 0;
  int32_t prompt_chunk_ = kDefaultPromptChunk;
  bool paged_ = false;
};

}  // namespace strata::runtime
