// split_step on paged KV (OffloadEngine::reset_paged's limits): sequences go to the GPU batch of
// their first page with their page within it, may run on over the pages after it but not past
// their batch's pages or into the next sequence, and each batch keeps its limits of prompts and
// sequences a step. With slots (reset), a sequence stays within its slot.
#include "offload/step_state.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace strata::offload {
namespace {

struct Seq {
  int32_t slot, past, tokens;
};

compute::TokenBatch batch_of(const std::vector<Seq>& seqs) {
  compute::TokenBatch b;
  for (const Seq& s : seqs) {
    const std::vector<int32_t> ids(static_cast<size_t>(s.tokens), 7);
    b.add_sequence(s.slot, s.past, ids);
  }
  return b;
}

// 2 GPU batches of 2 sequences of 16 positions: 8 pages of 8 a batch, at most 3 sequences and 2
// prompts a batch in a step.
const BlockDims kDims{/*layers=*/2, /*batches=*/2, /*gbs=*/2, /*prefill_len=*/16, /*max_len=*/32};
const StepLimits kPaged{16, 8, true, 8, 3, 2};

Status split(const std::vector<Seq>& seqs, const StepLimits& limits, StepState* st) {
  const compute::TokenBatch b = batch_of(seqs);
  std::vector<int32_t> rows;
  for (int32_t i = 0; i < static_cast<int32_t>(seqs.size()); ++i) rows.push_back(b.seqs[i].offset + b.seqs[i].num_tokens - 1);
  return split_step(b, rows, kDims, limits, st);
}

TEST(SplitStep, PagedSequencesGoToTheirFirstPagesBatch) {
  StepState st;
  // A 13-token prompt at page 0 (pages 0-1), 3 at page 2, 16 at page 9 (batch 1, its page 1).
  ASSERT_TRUE(split({{0, 0, 13}, {2, 0, 3}, {9, 0, 16}}, kPaged, &st).is_ok());
  EXPECT_TRUE(st.prefill);
  ASSERT_EQ(st.subs[0].batch.seqs.size(), 2u);
  EXPECT_EQ(st.subs[0].batch.seqs[1].slot, 2);
  ASSERT_EQ(st.subs[1].batch.seqs.size(), 1u);
  EXPECT_EQ(st.subs[1].batch.seqs[0].slot, 1);
  EXPECT_EQ(st.subs[1].first_row, 16);
  // Decoding, sequences past their first page: rows 0-20 and 24-54, and 8-48 of batch 1.
  ASSERT_TRUE(split({{0, 20, 1}, {3, 30, 1}, {9, 40, 1}}, kPaged, &st).is_ok());
  EXPECT_FALSE(st.prefill);
  EXPECT_EQ(st.subs[1].batch.seqs[0].past_len, 40);
}

TEST(SplitStep, PagedSequencesStayInTheirBatchAndApart) {
  StepState st;
  Status s = split({{5, 30, 1}}, kPaged, &st);  // rows 40-71 of a batch of 64
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("past its GPU batch's pages"), std::string::npos) << s.message();
  s = split({{0, 13, 1}, {1, 3, 1}}, kPaged, &st);  // rows 0-13 and 8-11
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("into the sequence before it"), std::string::npos) << s.message();
  s = split({{0, 0, 13}, {1, 0, 3}}, kPaged, &st);  // a prompt of 13 at page 0 runs into page 1's
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("into the sequence before it"), std::string::npos) << s.message();
  s = split({{0, 0, 3}, {1, 0, 3}, {2, 0, 3}}, kPaged, &st);  // 3 prompts, 2 a batch
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("more than 2 prompts"), std::string::npos) << s.message();
  s = split({{0, 5, 1}, {1, 5, 1}, {2, 5, 1}, {3, 5, 1}}, kPaged, &st);  // 4 sequences, 3 a batch
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("more than 3 sequences"), std::string::npos) << s.message();
  EXPECT_TRUE(split({{0, 5, 1}, {1, 5, 1}, {2, 5, 1}, {8, 5, 1}}, kPaged, &st).is_ok());
}

TEST(SplitStep, WithSlotsASequenceStaysInItsSlot) {
  StepState st;
  const StepLimits slots{4, 32, false, 2, 2, 2};
  EXPECT_FALSE(split({{0, 31, 1}, {3, 0, 16}}, slots, &st).is_ok());  // prompts beside decoding
  EXPECT_TRUE(split({{0, 31, 1}, {3, 20, 1}}, slots, &st).is_ok());
  ASSERT_EQ(st.subs[1].batch.seqs.size(), 1u);
  EXPECT_EQ(st.subs[1].batch.seqs[0].slot, 1);
  const Status s = split({{0, 32, 1}}, slots, &st);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("reset() made room for 32"), std::string::npos) << s.message();
}

// Where attention runs on the GPU for every tier, a decode step also carries prompts (a sequence
// starting, or the next chunk of one) within each GPU batch's prompt, sequence and token limits;
// elsewhere such a step is refused. A prompt step of its own keeps the policy's prompt length.
TEST(SplitStep, AMixedStepCarriesPromptsBesideDecodingWithinItsBatchesLimits) {
  StepState st;
  StepLimits mixed = kPaged;
  mixed.mixed = true;
  mixed.group_tokens = 20;
  // Batch 0: a running sequence (page 0), a 10-token prompt (page 4); batch 1: a running one.
  ASSERT_TRUE(split({{0, 20, 1}, {4, 0, 10}, {9, 40, 1}}, mixed, &st).is_ok());
  EXPECT_FALSE(st.prefill);
  EXPECT_TRUE(st.mixed);
  ASSERT_EQ(st.subs[0].batch.seqs.size(), 2u);
  EXPECT_EQ(st.subs[0].batch.size(), 11);
  EXPECT_EQ(st.subs[1].first_row, 11);
  Status s = split({{0, 20, 1}, {4, 0, 10}}, kPaged, &st);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("mixes prompts and decoding"), std::string::npos) << s.message();
  // A prompt's next chunk beside a running sequence.
  ASSERT_TRUE(split({{0, 20, 1}, {4, 6, 5}}, mixed, &st).is_ok());
  EXPECT_TRUE(st.mixed);
  s = split({{0, 20, 1}, {4, 6, 5}}, kPaged, &st);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("one token per sequence"), std::string::npos) << s.message();
  // Decoding alone is no mixed step.
  ASSERT_TRUE(split({{0, 20, 1}, {9, 40, 1}}, mixed, &st).is_ok());
  EXPECT_FALSE(st.mixed);
  // Two prompts beside a running sequence: 3 sequences of the 3, 2 prompts of the 2.
  EXPECT_TRUE(split({{0, 20, 1}, {4, 0, 3}, {6, 0, 3}}, mixed, &st).is_ok());
  // 21 tokens in batch 0.
  s = split({{0, 20, 1}, {4, 0, 20}}, mixed, &st);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("more than 20 tokens"), std::string::npos) << s.message();
  // A prompt longer than the policy's 16 rides in a mixed step, not in a prompt step of its own.
  EXPECT_TRUE(split({{0, 20, 1}, {4, 0, 18}}, mixed, &st).is_ok());
  s = split({{4, 0, 18}}, mixed, &st);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("longer than the policy's prompt length 16"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace strata::offload
