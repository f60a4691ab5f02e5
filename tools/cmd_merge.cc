// strata merge: combines the shard outputs of a job (`strata generate --shard I/N` writes
// OUTPUT.shard-I-of-N) into its output, checking that every request of the input is answered
// exactly once (runtime/merge.h). Nothing is written unless the shards are complete and agree.
#include <cstdio>

#include "commands.h"
#include "runtime/merge.h"

namespace strata::tools {

namespace {

struct MergeArgs {
  runtime::MergeOptions merge;
  std::string order = "input";
  bool quiet = false;
};

Status run_merge(MergeArgs& a) {
  if (a.order != "input" && a.order != "shard")
    return invalid_argument("--order must be input (the input's line order) or shard (shard 0's records, then "
                            "shard 1's, ...), not '" + a.order + "'");
  a.merge.input_order = a.order == "input";
  Logger log(a.quiet ? LogLevel::kWarn : LogLevel::kInfo);
  STRATA_ASSIGN_OR_RETURN(runtime::MergeSummary sum, runtime::merge_shards(a.merge, log));
  if (!a.quiet) std::fprintf(stderr, "%s", sum.to_text(a.merge.output).c_str());
  return Status::ok();
}

}  // namespace

void register_merge(CLI::App& app, int* exit_code) {
  static MergeArgs a;
  auto* cmd = app.add_subcommand("merge", "Combine the shard outputs of a job (generate --shard I/N) into its output");
  cmd->add_option("--input", a.merge.input, "the job's requests (the --input every shard was given)")->required();
  cmd->add_option("--output", a.merge.output,
                  "the job's output (the --output every shard was given); the shards are OUTPUT.shard-I-of-N")
      ->required();
  cmd->add_option("--shards", a.merge.shards, "N, the shard count (default: found from the shard files)");
  cmd->add_option("--order", a.order, "input (the input's line order) or shard (shard by shard, as written)")
      ->capture_default_str();
  cmd->add_flag("--overwrite", a.merge.overwrite, "replace an existing --output");
  cmd->add_flag("--quiet", a.quiet, "no summary on stderr");
  cmd->callback([exit_code] { *exit_code = report("merge", run_merge(a)); });
}

}  // namespace strata::tools
