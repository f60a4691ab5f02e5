// The strata subcommands. Each file tools/cmd_<name>.cc registers one subcommand on the CLI11 app;
// its callback runs the command and stores the process exit code in `*exit_code`.
#pragma once

#include <CLI/CLI.hpp>

#include "common/status.h"

namespace strata::tools {

void register_info(CLI::App& app, int* exit_code);
void register_complete(CLI::App& app, int* exit_code);
void register_chat(CLI::App& app, int* exit_code);
void register_devices(CLI::App& app, int* exit_code);
void register_convert(CLI::App& app, int* exit_code);
void register_bench(CLI::App& app, int* exit_code);
void register_generate(CLI::App& app, int* exit_code);
void register_tokenize(CLI::App& app, int* exit_code);
void register_plan(CLI::App& app, int* exit_code);
void register_profile(CLI::App& app, int* exit_code);
void register_capacity(CLI::App& app, int* exit_code);
void register_eval(CLI::App& app, int* exit_code);
void register_merge(CLI::App& app, int* exit_code);
void register_slurm(CLI::App& app, int* exit_code);

// Prints "strata <command>: <status>" to stderr and returns the exit code for it (0 when ok).
int report(const char* command, const Status& status);

}  // namespace strata::tools
