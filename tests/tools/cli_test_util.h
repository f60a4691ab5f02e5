// Test helpers: the strata binary as a subprocess (with extra environment variables), and the
// records of a results file. Header-only; used by the CLI tests.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "text/line_io.h"

namespace strata::testing {

struct CliOutcome {
  int code = -1;       // exit code, or 128 + signal
  std::string output;  // stdout and stderr together
};

// Starts the binary with `args` and `env` ("NAME=value"), stderr and stdout appended to `log`.
inline pid_t spawn_strata(const std::vector<std::string>& args, const std::string& log,
                          const std::vector<std::string>& env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(STRATA_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (!std::freopen(log.c_str(), "a", stderr)) _exit(126);
    if (!std::freopen(log.c_str(), "a", stdout)) _exit(126);
    execv(STRATA_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs the binary to completion; its output is returned (and kept in `log`).
inline CliOutcome run_strata_env(const std::vector<std::string>& args, const std::string& log,
                                 const std::vector<std::string>& env = {}) {
  std::ofstream(log, std::ios::trunc).close();
  CliOutcome o;
  o.code = wait_exit(spawn_strata(args, log, env));
  o.output = file_text(log);
  return o;
}

// Runs the binary to completion with its standard output and standard error kept apart, in the
// directory `cwd` ("" = this one), its standard input read from `in_path` ("" = this one's).
struct CliStreams {
  int code = -1;
  std::string out, err;
};
inline CliStreams run_strata_streams(const std::vector<std::string>& args, const std::string& out_path,
                                     const std::string& err_path, const std::string& cwd = "",
                                     const std::string& in_path = "") {
  const pid_t pid = fork();
  if (pid == 0) {
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    if (!in_path.empty() && !std::freopen(in_path.c_str(), "r", stdin)) _exit(126);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(STRATA_BINARY));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (!std::freopen(err_path.c_str(), "w", stderr)) _exit(126);
    if (!std::freopen(out_path.c_str(), "w", stdout)) _exit(126);
    execv(STRATA_BINARY, argv.data());
    _exit(127);
  }
  CliStreams s;
  s.code = wait_exit(pid);
  s.out = file_text(out_path);
  s.err = file_text(err_path);
  return s;
}

// `base` with the flags of `extra` added; a flag both name takes the value `extra` gives.
inline std::vector<std::string> with_flags(std::vector<std::string> base, const std::vector<std::string>& extra) {
  for (size_t i = 0; i < extra.size(); ++i) {
    const bool has_value = i + 1 < extra.size() && extra[i + 1].rfind("--", 0) != 0;
    bool replaced = false;
    for (size_t j = 0; has_value && j + 1 < base.size(); ++j) {
      if (base[j] == extra[i]) {
        base[j + 1] = extra[i + 1];
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      base.push_back(extra[i]);
      if (has_value) base.push_back(extra[i + 1]);
    }
    if (has_value) ++i;
  }
  return base;
}

// Complete records of a results file (a torn tail is not counted), read without changing it.
inline std::vector<nlohmann::json> result_records(const std::string& path) {
  std::vector<nlohmann::json> out;
  auto r = text::LineReader::open(path);
  if (!r.is_ok()) return out;
  std::string line;
  for (;;) {
    auto more = (*r)->next(line);
    if (!more.is_ok() || !*more) break;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

// The text or error code of each record by custom_id; several records of one id are all kept.
inline std::multimap<std::string, std::string> answers_by_id(const std::string& path) {
  std::multimap<std::string, std::string> m;
  for (const auto& r : result_records(path)) {
    const std::string id = r["custom_id"].is_string() ? r["custom_id"].get<std::string>() : "#" + r["id"].get<std::string>();
    if (r["response"].is_object()) {
      const auto& c = r["response"]["body"]["choices"][0];
      m.emplace(id, c.contains("text") ? c["text"].get<std::string>() : c["message"]["content"].get<std::string>());
    } else {
      m.emplace(id, "error:" + r["error"]["code"].get<std::string>());
    }
  }
  return m;
}

}  // namespace strata::testing
