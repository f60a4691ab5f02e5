#include "slurm_script.h"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace strata::tools {

std::string shell_quote(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/._-+=:,@%").find(c) != std::string_view::npos;
  });
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

SlurmScripts make_slurm_scripts(const SlurmJob& j) {
  const std::string n = std::to_string(j.tasks);
  const std::string logs = j.script_dir + "/logs";
  std::string extra;
  for (const std::string& opt : j.sbatch_options) extra += "#SBATCH " + opt + "\n";
  SlurmScripts s;
  s.array = "#!/bin/bash\n"
            "# strata generate, shard $SLURM_ARRAY_TASK_ID of " + n + ", written by `strata slurm`.\n"
            "# Each task resumes its shard's output, so a requeued or restarted task goes on from the last\n"
            "# result written and answers every request of its shard exactly once.\n"
            "#SBATCH --job-name=" + j.job_name + "\n"
            "#SBATCH --array=0-" + std::to_string(j.tasks - 1) + "\n"
            "#SBATCH --ntasks=1\n" +
            (j.cpu ? std::string() : "#SBATCH --gres=gpu:1\n") +
            "#SBATCH --requeue\n"
            "#SBATCH --open-mode=append\n"
            "#SBATCH --output=" + logs + "/%x-%A_%a.log\n" + extra +
            "set -euo pipefail\n"
            "echo \"strata: shard ${SLURM_ARRAY_TASK_ID}/" + n + " on $(hostname), restart ${SLURM_RESTART_COUNT:-0}\"\n"
            "exec " + shell_quote(j.strata) + " generate --model " + shell_quote(j.model) + " --input " +
            shell_quote(j.input) + " --output " + shell_quote(j.output) + " --shard \"${SLURM_ARRAY_TASK_ID}/" + n +
            "\" --resume --device " + (j.cpu ? "cpu" : "cuda");
  for (const std::string& a : j.generate_args) s.array += " " + shell_quote(a);
  s.array += "\n";
  s.merge = "#!/bin/bash\n"
            "# strata merge of the " + n + " shards, written by `strata slurm`; submitted with\n"
            "# --dependency=afterok:<array job>, so it starts once every task of the array has succeeded\n"
            "# (a requeued task counts by its final run).\n"
            "#SBATCH --job-name=" + j.job_name + "-merge\n"
            "#SBATCH --ntasks=1\n"
            "#SBATCH --requeue\n"
            "#SBATCH --open-mode=append\n"
            "#SBATCH --output=" + logs + "/%x-%j.log\n" + extra +
            "set -euo pipefail\n"
            "exec " + shell_quote(j.strata) + " merge --input " + shell_quote(j.input) + " --output " +
            shell_quote(j.output) + " --shards " + n + " --overwrite\n";
  s.requeue = "#!/bin/bash\n"
              "# Requeues tasks of the array of " + j.job_name + " that failed or were cancelled, and makes its merge\n"
              "# job wait for every task again (Slurm keeps an array's failure in afterok:<array>, so the merge's\n"
              "# dependency becomes one per task). Usage: requeue.sh TASK... (array task ids, 0 to " +
              std::to_string(j.tasks - 1) + ")\n"
              "set -euo pipefail\n"
              ". \"$(dirname \"$0\")/jobs.env\"  # ARRAY_JOB, MERGE_JOB, TASKS\n"
              "[ $# -ge 1 ] || { echo \"usage: $0 TASK...\" >&2; exit 2; }\n"
              "for t in \"$@\"; do scontrol requeue \"${ARRAY_JOB}_$t\"; done\n"
              "deps=\"\"\n"
              "for ((i = 0; i < TASKS; i++)); do deps=\"$deps:${ARRAY_JOB}_$i\"; done\n"
              "scontrol update JobId=\"$MERGE_JOB\" Dependency=\"afterok$deps\"\n"
              "echo \"requeued $*; merge job $MERGE_JOB waits for tasks 0-$((TASKS - 1)) of $ARRAY_JOB\"\n";
  return s;
}

}  // namespace strata::tools
