#include "planner/lp.h"

#include <gtest/gtest.h>

namespace strata::planner {
namespace {

TEST(LinearProgram, SolvesATextbookMaximisation) {
  // max 3x + 2y s.t. x + y <= 4, x + 3y <= 6, x <= 3, x, y >= 0. By hand: the vertex x = 3, y = 1
  // gives 11 (the others: (0,0) 0, (0,2) 4, (3,0) 9).
  LinearProgram lp;
  int x = lp.add_variable("x", 0, 3, -3);
  int y = lp.add_variable("y", 0, kLpInfinity, -2);
  lp.add_row({{x, 1}, {y, 1}}, -kLpInfinity, 4);
  lp.add_row({{x, 1}, {y, 3}}, -kLpInfinity, 6);
  auto s = lp.solve();
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_NEAR(s->x[x], 3, 1e-9);
  EXPECT_NEAR(s->x[y], 1, 1e-9);
  EXPECT_NEAR(s->objective, -11, 1e-9);
}

TEST(LinearProgram, MinimisesAMaxWithAnEpigraphVariable) {
  // min T s.t. T >= 2a, T >= 3b, a + b = 1: the two bounds meet at a = 3/5, T = 6/5.
  LinearProgram lp;
  int a = lp.add_variable("a", 0, 1, 0);
  int b = lp.add_variable("b", 0, 1, 0);
  int t = lp.add_variable("T", 0, kLpInfinity, 1);
  lp.add_row({{t, 1}, {a, -2}}, 0, kLpInfinity);
  lp.add_row({{t, 1}, {b, -3}}, 0, kLpInfinity);
  lp.add_row({{a, 1}, {b, 1}}, 1, 1);
  auto s = lp.solve();
  ASSERT_TRUE(s.is_ok());
  EXPECT_NEAR(s->x[a], 0.6, 1e-9);
  EXPECT_NEAR(s->x[t], 1.2, 1e-9);
}

TEST(LinearProgram, RepeatedTermsAreSummed) {
  // min -x s.t. x + x <= 3  ->  x = 1.5.
  LinearProgram lp;
  int x = lp.add_variable("x", 0, kLpInfinity, -1);
  lp.add_row({{x, 1}, {x, 1}}, -kLpInfinity, 3);
  auto s = lp.solve();
  ASSERT_TRUE(s.is_ok());
  EXPECT_NEAR(s->x[x], 1.5, 1e-9);
}

TEST(LinearProgram, InfeasibleProgramsSaySo) {
  LinearProgram lp;
  int x = lp.add_variable("x", 0, 1, 1);
  lp.add_row({{x, 1}}, 2, kLpInfinity, "x at least 2");
  auto s = lp.solve("toy");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInfeasible);
  EXPECT_NE(s.status().message().find("toy"), std::string::npos);
}

TEST(LinearProgram, UnboundedProgramsAreAnError) {
  LinearProgram lp;
  lp.add_variable("x", 0, kLpInfinity, -1);
  auto s = lp.solve();
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().code(), StatusCode::kOk);
}

}  // namespace
}  // namespace strata::planner
