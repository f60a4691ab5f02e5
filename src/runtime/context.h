// Context: what a strata process carries instead of globals: the logger, the CPU thread pool and
// the compute backend. Created once by the CLI (or a test) and passed by reference. The Context
// owns everything in it; it is not thread safe.
#pragma once

#include <memory>
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "compute/backend.h"

namespace strata::runtime {

struct ContextOptions {
  std::string device = "cpu";   // "cpu", or "cuda" / "cuda:N" (GPU N) for the CUDA backend
  DType gpu_activation_dtype = DType::kF16;  // the CUDA backend's activations: F16 or BF16
  int threads = 0;              // CPU worker threads; 0 = all cores
  bool int4_kv = false;         // KV cache through int4-g64 (CPU backend; see CpuBackendOptions)
  bool cpu_bf16_matmul = true;  // false: the CPU backend widens BF16 weights and computes in F32
  LogLevel log_level = LogLevel::kInfo;
};

class Context {
 public:
  explicit Context(const ContextOptions& options);

  Logger logger;
  ThreadPool pool;
  std::unique_ptr<compute::Backend> backend;
};

// Builds a Context, or says why the requested device cannot be used.
Result<std::unique_ptr<Context>> make_context(const ContextOptions& options);

}  // namespace strata::runtime
