// LinearProgram: a small linear program (minimise c·x subject to row bounds and column bounds)
// built row by row and solved with COIN-OR Clp's dual simplex. The planner builds one per
// (GPU batch size, number of GPU batches, compression, attention) candidate. Not thread safe
// per object; separate objects may be solved on separate threads.
#pragma once

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace strata::planner {

inline constexpr double kLpInfinity = std::numeric_limits<double>::infinity();

struct LpSolution {
  double objective = 0;
  std::vector<double> x;  // one value per variable, in the order they were added
};

class LinearProgram {
 public:
  // Adds a variable with bounds [lower, upper] and objective coefficient `cost`; returns its index.
  int add_variable(std::string name, double lower, double upper, double cost);
  // Adds lower <= sum(coefficient * x[index]) <= upper. Repeated indices are summed.
  void add_row(std::vector<std::pair<int, double>> terms, double lower, double upper,
               std::string name = {});

  int num_variables() const { return static_cast<int>(names_.size()); }
  int num_rows() const { return static_cast<int>(rows_.size()); }

  // kInfeasible when no x satisfies the rows (the message names the program), kInternal when the
  // program is unbounded or the solver fails.
  Result<LpSolution> solve(const std::string& what = "linear program") const;

 private:
  struct Row {
    std::vector<std::pair<int, double>> terms;
    double lower, upper;
    std::string name;
  };
  std::vector<std::string> names_;
  std::vector<double> lower_, upper_, cost_;
  std::vector<Row> rows_;
};

}  // namespace strata::planner
