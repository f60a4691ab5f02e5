// strata slurm: runs a generate job as a Slurm job array. Writes the scripts of slurm_script.h
// (OUTPUT.slurm/array.sbatch and merge.sbatch, logs in OUTPUT.slurm/logs), then submits the array
// with `sbatch --parsable` and the merge with --dependency=afterok:<array job id>; --dry-run
// writes and prints them without submitting. OUTPUT.slurm/requeue.sh TASK requeues a task that
// failed or was cancelled and makes the merge wait for it again (job ids in jobs.env). Flags this command does not know are `strata
// generate` flags, passed to every task as given.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "runtime/shard.h"
#include "slurm_script.h"

namespace strata::tools {

namespace {

namespace fs = std::filesystem;

struct SlurmArgs {
  SlurmJob job;
  std::string sbatch = "sbatch";
  bool dry_run = false;
  CLI::App* cmd = nullptr;
};

Status write_script(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return io_error(path.string() + ": cannot write the script", errno);
  fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  return Status::ok();
}

// Runs `argv` and returns its standard output; an error with its output when it fails.
Result<std::string> run_command(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe(fds) != 0) return io_error("pipe failed", errno);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(r));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + shell_quote(a);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return io_error("`" + cmd + "` failed (exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                    ")" + (out.empty() ? "" : ": " + out) +
                    (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "; is Slurm installed here (sbatch on PATH)?" : ""), 0);
  return out;
}

// "12345" or "12345;cluster" from sbatch --parsable.
Result<std::string> job_id(const std::string& out) {
  std::string id = out.substr(0, out.find_first_of(";\n"));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    return io_error("sbatch --parsable printed '" + out + "', not a job id", 0);
  return id;
}

Status run_slurm(SlurmArgs& a) {
  SlurmJob& j = a.job;
  if (j.tasks < 1 || j.tasks > runtime::kMaxShards)
    return invalid_argument("--tasks must be 1 to " + std::to_string(runtime::kMaxShards) + " (one shard each), got " +
                            std::to_string(j.tasks));
  if (j.output.empty() || j.output == "-") return invalid_argument("--output must be a file");
  std::error_code ec;
  if (!fs::is_regular_file(j.input, ec)) return not_found(j.input + ": the input file does not exist");
  if (!fs::is_directory(j.model, ec)) return not_found(j.model + ": the model directory does not exist");
  for (const std::string& arg : a.cmd->remaining()) {
    for (const char* owned : {"--shard", "--resume", "--device", "--input", "--output", "--model", "--overwrite"})
      if (arg == owned || arg.starts_with(std::string(owned) + "="))
        return invalid_argument(arg + ": strata slurm sets " + owned + " for each task itself; leave it out" +
                                (std::string(owned) == "--device" ? " (give --cpu for a job without GPUs)" : ""));
    j.generate_args.push_back(arg);
  }
  j.input = fs::absolute(j.input).lexically_normal().string();
  j.output = fs::absolute(j.output).lexically_normal().string();
  j.model = fs::absolute(j.model).lexically_normal().string();
  if (j.strata.empty()) j.strata = fs::read_symlink("/proc/self/exe", ec).string();
  if (j.strata.empty()) return io_error("cannot find this strata binary's path; give --strata", ec.value());
  if (!fs::is_directory(fs::path(j.output).parent_path(), ec))
    return not_found(j.output + ": the directory " + fs::path(j.output).parent_path().string() + " does not exist");
  if (j.script_dir.empty()) j.script_dir = j.output + ".slurm";
  j.script_dir = fs::absolute(j.script_dir).lexically_normal().string();
  if (j.job_name.empty()) j.job_name = "strata-" + fs::path(j.output).stem().string();
  fs::create_directories(fs::path(j.script_dir) / "logs", ec);
  if (ec) return io_error(j.script_dir + ": cannot create the script directory: " + ec.message(), ec.value());
  const SlurmScripts scripts = make_slurm_scripts(j);
  const fs::path array = fs::path(j.script_dir) / "array.sbatch", merge = fs::path(j.script_dir) / "merge.sbatch";
  STRATA_RETURN_IF_ERROR(write_script(array, scripts.array));
  STRATA_RETURN_IF_ERROR(write_script(merge, scripts.merge));
  const fs::path requeue = fs::path(j.script_dir) / "requeue.sh";
  STRATA_RETURN_IF_ERROR(write_script(requeue, scripts.requeue));
  if (a.dry_run) {
    std::printf("# %s\n%s\n# %s\n%s\n# submit with:\n#   array=$(%s --parsable %s)\n#   %s --parsable "
                "--dependency=afterok:${array%%%%;*} %s\n",
                array.c_str(), scripts.array.c_str(), merge.c_str(), scripts.merge.c_str(), a.sbatch.c_str(),
                shell_quote(array.string()).c_str(), a.sbatch.c_str(), shell_quote(merge.string()).c_str());
    return Status::ok();
  }
  STRATA_ASSIGN_OR_RETURN(std::string out, run_command({a.sbatch, "--parsable", array.string()}));
  STRATA_ASSIGN_OR_RETURN(std::string array_id, job_id(out));
  Result<std::string> merge_out =
      run_command({a.sbatch, "--parsable", "--dependency=afterok:" + array_id, merge.string()});
  if (!merge_out.is_ok())
    return merge_out.status().with_context("the array job " + array_id + " was submitted but its merge job was not; "
                                           "submit it with `sbatch --dependency=afterok:" + array_id + " " +
                                           merge.string() + "`");
  STRATA_ASSIGN_OR_RETURN(std::string merge_id, job_id(*merge_out));
  STRATA_RETURN_IF_ERROR(write_script(fs::path(j.script_dir) / "jobs.env",
                                      "ARRAY_JOB=" + array_id + "\nMERGE_JOB=" + merge_id + "\nTASKS=" +
                                          std::to_string(j.tasks) + "\n"));
  std::printf("array job %s: %d tasks (strata generate --shard I/%d --resume), logs in %s/logs\n", array_id.c_str(),
              j.tasks, j.tasks, j.script_dir.c_str());
  std::printf("merge job %s: runs after every task of %s succeeded (afterok), writes %s\n", merge_id.c_str(),
              array_id.c_str(), j.output.c_str());
  std::printf("a task that failed or was cancelled: %s TASK requeues it and lets the merge wait for it\n",
              requeue.c_str());
  return Status::ok();
}

}  // namespace

void register_slurm(CLI::App& app, int* exit_code) {
  static SlurmArgs a;
  auto* cmd = app.add_subcommand(
      "slurm", "Run a generate job as a Slurm job array (one shard per task) with a dependent merge job; other "
               "flags are passed to every task's strata generate");
  a.cmd = cmd;
  cmd->allow_extras();
  cmd->add_option("--input", a.job.input, "the job's requests (a file every task can read)")->required();
  cmd->add_option("--output", a.job.output, "the job's output; task I writes OUTPUT.shard-I-of-N beside it")->required();
  cmd->add_option("--model", a.job.model, "the model directory (every task reads it)")->required();
  cmd->add_option("--tasks", a.job.tasks, "N: array tasks and shards, one GPU each")->required();
  cmd->add_flag("--cpu", a.job.cpu, "run the tasks on the CPU (--device cpu, no --gres=gpu:1)");
  cmd->add_option("--sbatch-option", a.job.sbatch_options,
                  "an #SBATCH line for both scripts, e.g. --sbatch-option=--partition=gpu (repeat for several)");
  cmd->add_option("--job-name", a.job.job_name, "Slurm job name (default strata-<output name>)");
  cmd->add_option("--script-dir", a.job.script_dir, "where the scripts and logs/ go (default OUTPUT.slurm)");
  cmd->add_option("--strata", a.job.strata, "the strata binary the tasks run (default: this one)");
  cmd->add_option("--sbatch", a.sbatch, "the sbatch command")->capture_default_str();
  cmd->add_flag("--dry-run", a.dry_run, "write and print the scripts and the commands that submit them; submit nothing");
  cmd->callback([exit_code] { *exit_code = report("slurm", run_slurm(a)); });
}

}  // namespace strata::tools
