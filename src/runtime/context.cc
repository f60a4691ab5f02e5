#include "runtime/context.h"

#include "cuda/cuda_backend.h"
#include "cuda/device.h"

namespace strata::runtime {

Context::Context(const ContextOptions& options) : logger(options.log_level), pool(options.threads) {}

Result<std::unique_ptr<Context>> make_context(const ContextOptions& options) {
  if (options.device == "cpu") {
    auto ctx = std::make_unique<Context>(options);
    compute::CpuBackendOptions cpu;
    cpu.int4_kv = options.int4_kv;
    cpu.allow_bf16_matmul = options.cpu_bf16_matmul;
    ctx->backend = compute::make_cpu_backend(ctx->pool, cpu);
    return ctx;
  }
  const std::string& dev = options.device;
  if (dev == "cuda" || dev == "gpu" || dev.rfind("cuda:", 0) == 0) {
    if (options.int4_kv)
      return unsupported("--device " + dev + ": an int4 KV cache runs on the CPU backend only so far; use --device cpu");
    cuda::CudaBackendOptions copts;
    copts.activation_dtype = options.gpu_activation_dtype;
    if (dev.size() > 5) {
      const std::string index = dev.substr(5);
      if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos ||
          index.size() > 4)
        return invalid_argument("--device " + dev + ": expected cuda:N with N a GPU index");
      copts.device = std::stoi(index);
    }
    auto backend = cuda::make_cuda_backend(copts);
    if (!backend.is_ok()) {
      cuda::DeviceQuery q = cuda::query_devices();
      return backend.status().with_context(
          "--device " + dev + (q.devices.empty() ? " (" + q.note + ")" : ""));
    }
    auto ctx = std::make_unique<Context>(options);
    ctx->backend = std::move(backend).value();
    return ctx;
  }
  return invalid_argument("--device must be cpu, cuda or cuda:N (got '" + dev + "')");
}

}  // namespace strata::runtime
