#include "planner/lp.h"

#include <cmath>
#include <map>

#include <coin/ClpSimplex.hpp>
#include <coin/CoinFinite.hpp>

#include "common/check.h"

namespace strata::planner {

namespace {
double clp_bound(double v) {
  if (std::isinf(v)) return v > 0 ? COIN_DBL_MAX : -COIN_DBL_MAX;
  return v;
}
}  // namespace

int LinearProgram::add_variable(std::string name, double lower, double upper, double cost) {
  STRATA_CHECK(lower <= upper, "variable " + name + " has empty bounds");
  names_.push_back(std::move(name));
  lower_.push_back(lower);
  upper_.push_back(upper);
  cost_.push_back(cost);
  return static_cast<int>(names_.size()) - 1;
}

void LinearProgram::add_row(std::vector<std::pair<int, double>> terms, double lower, double upper,
                            std::string name) {
  for (auto& [i, c] : terms) {
    STRATA_CHECK(i >= 0 && i < num_variables(), "row " + name + " names an unknown variable");
    STRATA_CHECK(std::isfinite(c), "row " + name + " has a non-finite coefficient");
  }
  rows_.push_back({std::move(terms), lower, upper, std::move(name)});
}

Result<LpSolution> LinearProgram::solve(const std::string& what) const {
  const int ncols = num_variables(), nrows = num_rows();
  // Column-major matrix, as Clp's loadProblem wants it; repeated (row, col) entries are summed.
  std::vector<std::map<int, double>> cols(ncols);
  for (int r = 0; r < nrows; ++r)
    for (auto [c, v] : rows_[r].terms) cols[c][r] += v;
  std::vector<CoinBigIndex> start(ncols + 1, 0);
  std::vector<int> index;
  std::vector<double> value;
  for (int c = 0; c < ncols; ++c) {
    for (auto [r, v] : cols[c]) {
      if (v == 0) continue;
      index.push_back(r);
      value.push_back(v);
    }
    start[c + 1] = static_cast<CoinBigIndex>(index.size());
  }
  std::vector<double> collb(ncols), colub(ncols), rowlb(nrows), rowub(nrows);
  for (int c = 0; c < ncols; ++c) {
    collb[c] = clp_bound(lower_[c]);
    colub[c] = clp_bound(upper_[c]);
  }
  for (int r = 0; r < nrows; ++r) {
    rowlb[r] = clp_bound(rows_[r].lower);
    rowub[r] = clp_bound(rows_[r].upper);
  }

  ClpSimplex model;
  model.setLogLevel(0);
  model.loadProblem(ncols, nrows, start.data(), index.data(), value.data(), collb.data(),
                    colub.data(), cost_.data(), rowlb.data(), rowub.data());
  model.dual();
  if (model.isProvenPrimalInfeasible())
    return Status(StatusCode::kInfeasible, what + " has no feasible solution");
  if (!model.isProvenOptimal()) {
    // The dual simplex occasionally stops short on badly scaled rows; the primal one decides.
    model.primal();
    if (model.isProvenPrimalInfeasible())
      return Status(StatusCode::kInfeasible, what + " has no feasible solution");
    if (!model.isProvenOptimal())
      return internal_error(what + ": Clp ended with status " + std::to_string(model.status()));
  }
  LpSolution s;
  s.objective = model.objectiveValue();
  const double* x = model.getColSolution();
  s.x.assign(x, x + ncols);
  return s;
}

}  // namespace strata::planner
