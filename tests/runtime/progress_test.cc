#include "runtime/progress.h"

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

namespace strata::runtime {
namespace {

// Progress lines written to a memory stream, every draw due (interval 0).
class ProgressLines {
 public:
  ProgressLines() { out_ = open_memstream(&buf_, &size_); }
  ~ProgressLines() {
    std::fclose(out_);
    std::free(buf_);
  }
  ProgressOptions options(double predicted_job_s) const {
    ProgressOptions o;
    o.interval_s = 0;
    o.predicted_job_s = predicted_job_s;
    o.out = out_;
    return o;
  }
  // The last line written.
  std::string last() {
    std::fflush(out_);
    std::string all(buf_, size_);
    if (!all.empty() && all.back() == '\n') all.pop_back();
    return all.substr(all.rfind('\n') == std::string::npos ? 0 : all.rfind('\n') + 1);
  }

 private:
  char* buf_ = nullptr;
  size_t size_ = 0;
  std::FILE* out_;
};

TEST(Progress, BeforeAnyRequestTheEtaIsThePlansThenTheRequestsDone) {
  ProgressLines lines;
  Progress p(lines.options(/*predicted_job_s=*/3600), 8);
  p.begin_block(4);
  p.block_step(1);
  p.block_step(3);
  p.block_step(2);  // the block's step is the furthest sequence's
  p.tick();
  const std::string first = lines.last();
  EXPECT_NE(first.find("progress: 0/8 requests (0.0%)"), std::string::npos) << first;
  EXPECT_NE(first.find("block 1 (4 requests) step 3"), std::string::npos) << first;
  EXPECT_NE(first.find("elapsed 0s"), std::string::npos) << first;
  EXPECT_NE(first.find("ETA 1h00m"), std::string::npos) << first;

  p.request_done(10, 3);  // one of eight in ~0 s: the rest in ~0 s, not the plan's hour
  const std::string second = lines.last();
  EXPECT_NE(second.find("1/8 requests"), std::string::npos) << second;
  EXPECT_EQ(second.find("ETA 1h"), std::string::npos) << second;
  EXPECT_EQ(second.find("ETA 59m"), std::string::npos) << second;
  EXPECT_EQ(second.find("ETA ?"), std::string::npos) << second;

  p.begin_block(2);
  p.tick();
  EXPECT_NE(lines.last().find("block 2 (2 requests) step 0"), std::string::npos) << lines.last();

  p.running(3, 4);  // continuous batching: how many of the slots are busy, no block
  p.tick();
  EXPECT_NE(lines.last().find("3 running in 4 slots, "), std::string::npos) << lines.last();
  EXPECT_EQ(lines.last().find("block"), std::string::npos) << lines.last();
}

// Requests finish longest answers first in a continuous run: the ETA follows the tokens left,
// not the requests done.
TEST(Progress, TheEtaIsTheTokensLeftAtTheRateSoFar) {
  ProgressLines lines;
  Progress p(lines.options(/*predicted_job_s=*/600), 10);
  EXPECT_DOUBLE_EQ(p.eta_s(100), 500);  // no token yet: the plan's time left
  // 4 of the 10 requests read, 1000 new tokens at most among them: 2500 expected in all.
  p.request_read(400);
  p.request_read(300);
  p.request_read(200);
  p.request_read(100);
  p.tokens_generated(500);
  EXPECT_DOUBLE_EQ(p.eta_s(100), 100.0 * (2500 - 500) / 500);
  // A request stopped 50 tokens short of its max_tokens: those are not waited for.
  p.request_done(10, 50, 50);
  EXPECT_DOUBLE_EQ(p.eta_s(100), 100.0 * (2500 - 500 - 50) / 500);
  // Every request read (the rest with no max_tokens left to generate): nothing is extrapolated.
  for (int i = 0; i < 6; ++i) p.request_read(0);
  p.tokens_generated(450);
  EXPECT_DOUBLE_EQ(p.eta_s(100), 0);
}

TEST(Progress, WithoutAPlanTheEtaWaitsForARequest) {
  ProgressLines lines;
  Progress p(lines.options(0), 5);
  p.tick();
  const std::string line = lines.last();
  EXPECT_NE(line.find("ETA ?"), std::string::npos) << line;
  EXPECT_EQ(line.find("block"), std::string::npos) << line;
}

TEST(Progress, DurationsReadAsHoursMinutesSeconds) {
  char buf[32];
  format_duration(42.4, buf, sizeof buf);
  EXPECT_STREQ(buf, "42s");
  format_duration(185, buf, sizeof buf);
  EXPECT_STREQ(buf, "3m05s");
  format_duration(3720, buf, sizeof buf);
  EXPECT_STREQ(buf, "1h02m");
  format_duration(-1, buf, sizeof buf);
  EXPECT_STREQ(buf, "?");
}

}  // namespace
}  // namespace strata::runtime
