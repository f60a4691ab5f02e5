// Crash points for the crash tests: STRATA_CRASH_AT="NAME:N" makes the N-th arrival (from 1) at
// crash_point("NAME") kill the process with SIGKILL, as a power cut or `kill -9` would at that
// moment. Without the variable every call is one branch on a cached flag. The points: record_written
// (a result written, before the next), torn_write (half a record written), atomic_write and
// rewrite (a replacement file written, before its rename), summary (the job done, its summary not
// yet printed). Thread safe.
#pragma once

#include <string_view>

namespace strata {

// True when this arrival at `name` is the one STRATA_CRASH_AT chose; the caller then does its
// partial work and calls crash_now().
bool crash_point_due(std::string_view name);
[[noreturn]] void crash_now();
inline void crash_point(std::string_view name) {
  if (crash_point_due(name)) crash_now();
}

}  // namespace strata
