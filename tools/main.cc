// strata: one binary, git-style subcommands (one file each under tools/).
#include <cstdio>

#include "commands.h"

namespace strata::tools {

int report(const char* command, const Status& status) {
  if (status.is_ok()) return 0;
  std::fprintf(stderr, "strata %s: %s\n", command, status.to_string().c_str());
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kCorrupt:
    case StatusCode::kUnsupported: return 2;
    case StatusCode::kCancelled: return 130;  // as a shell reports a job stopped by SIGINT
    default: return 1;
  }
}

}  // namespace strata::tools

int main(int argc, char** argv) {
  CLI::App app{"strata: high-throughput offline LLM generation on a GPU too small for the model"};
  app.set_version_flag("--version", "strata " STRATA_VERSION);
  app.require_subcommand(1);
  int exit_code = 0;
  strata::tools::register_info(app, &exit_code);
  strata::tools::register_complete(app, &exit_code);
  strata::tools::register_chat(app, &exit_code);
  strata::tools::register_devices(app, &exit_code);
  strata::tools::register_convert(app, &exit_code);
  strata::tools::register_bench(app, &exit_code);
  strata::tools::register_generate(app, &exit_code);
  strata::tools::register_tokenize(app, &exit_code);
  strata::tools::register_plan(app, &exit_code);
  strata::tools::register_profile(app, &exit_code);
  strata::tools::register_capacity(app, &exit_code);
  strata::tools::register_eval(app, &exit_code);
  strata::tools::register_merge(app, &exit_code);
  strata::tools::register_slurm(app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
