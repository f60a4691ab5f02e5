#include "runtime/eval.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace strata::runtime {

Result<EvalResult> evaluate_perplexity(compute::Transformer& model, std::span<const int32_t> tokens,
                                       const EvalOptions& options, const EvalProgress& progress) {
  const auto& cfg = model.config();
  int64_t context = options.context > 0 ? options.context
                                        : std::min<int64_t>(1024, cfg.max_position_embeddings);
  if (context < 2) return invalid_argument("eval: the context must be at least 2 tokens");
  if (context > cfg.max_position_embeddings)
    return invalid_argument("eval: a context of " + std::to_string(context) +
                            " tokens exceeds the model's " +
                            std::to_string(cfg.max_position_embeddings));
  if (tokens.size() < 2) return invalid_argument("eval: the text has fewer than 2 tokens");

  // Windows [begin, end); a last window shorter than 2 tokens scores nothing and is dropped.
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t b = 0; b + 1 < static_cast<int64_t>(tokens.size()); b += context)
    windows.emplace_back(b, std::min<int64_t>(b + context, static_cast<int64_t>(tokens.size())));
  int64_t total = 0;
  for (auto [b, e] : windows) total += e - b - 1;

  // Keep the host logits of one batch near 512 MiB.
  const int64_t vocab = cfg.vocab_size;
  const int64_t by_memory = std::max<int64_t>(1, (int64_t{512} << 20) / (context * vocab * 4));
  const int32_t batch = static_cast<int32_t>(
      std::max<int64_t>(1, std::min<int64_t>({options.max_batch, by_memory,
                                              static_cast<int64_t>(windows.size())})));
  STRATA_ASSIGN_OR_RETURN(compute::KvCache cache, model.make_kv_cache(batch, static_cast<int32_t>(context)));

  EvalResult result;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t w0 = 0; w0 < windows.size(); w0 += batch) {
    const size_t w1 = std::min(windows.size(), w0 + batch);
    compute::TokenBatch step;
    std::vector<int32_t> rows;
    for (size_t w = w0; w < w1; ++w) {
      auto [b, e] = windows[w];
      step.add_sequence(static_cast<int32_t>(w - w0), 0, tokens.subspan(b, e - b));
      for (int64_t i = 0; i + 1 < e - b; ++i) rows.push_back(step.size() - static_cast<int32_t>(e - b) + static_cast<int32_t>(i));
    }
    STRATA_ASSIGN_OR_RETURN(Tensor logits, model.forward(step, cache, rows));
    // Row r predicts the token after it.
    for (size_t r = 0; r < rows.size(); ++r) {
      const float* row = logits.data<float>() + static_cast<int64_t>(r) * vocab;
      const int32_t target = step.tokens[rows[r] + 1];
      double mx = row[0];
      for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(row[v]));
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
      result.nll_sum -= static_cast<double>(row[target]) - mx - std::log(sum);
    }
    result.tokens_scored += static_cast<int64_t>(rows.size());
    result.windows += static_cast<int32_t>(w1 - w0);
    if (progress) progress(result.tokens_scored, total);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace strata::runtime
