// The sbatch scripts `strata slurm` writes for a sharded job: a job array of N tasks, task I
// running `strata generate --shard I/N --resume` (one GPU each unless on the CPU, requeued by
// Slurm on preemption or node failure, its log appended across requeues), and a merge job that
// Slurm starts once every task of the array has succeeded (--dependency=afterok:<array job>).
// Pure functions; thread safe.
#pragma once

#include <string>
#include <vector>

namespace strata::tools {

struct SlurmJob {
  std::string strata;       // absolute path of the strata binary the tasks run
  std::string model, input, output;  // absolute paths
  int tasks = 1;            // N: shards and array tasks
  bool cpu = false;         // no GPU: --device cpu and no --gres
  std::string job_name;
  std::string script_dir;   // where the scripts and logs/ go
  std::vector<std::string> generate_args;  // more `strata generate` flags, passed as given
  std::vector<std::string> sbatch_options;  // more #SBATCH lines, for both scripts ("--partition=x")
};

struct SlurmScripts {
  std::string array;    // the job array
  std::string merge;    // the merge job
  // requeue.sh TASK...: requeues tasks that failed or were cancelled and makes the merge wait for
  // them again. Slurm keeps an array's failure in an afterok dependency on the whole array even
  // after the task is requeued and succeeds; a dependency on each task is evaluated afresh. Reads
  // the job ids from jobs.env beside it (written when the jobs are submitted).
  std::string requeue;
};

SlurmScripts make_slurm_scripts(const SlurmJob& job);

// `s` quoted for a POSIX shell (single quotes), unless it needs none.
std::string shell_quote(const std::string& s);

}  // namespace strata::tools
