// What the kernel reports about this process's own use of the machine. Thread safe. Units: bytes.
#pragma once

#include <cstdint>

namespace strata {

// The most memory the process has had resident at once (getrusage's ru_maxrss, VmHWM).
uint64_t peak_rss_bytes();

}  // namespace strata
