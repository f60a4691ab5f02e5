#include "runtime/context.h"

#include "cuda/device.h"

namespace strata::runtime {

Context::Context(const ContextOptions& options) : logger(options.log_level), pool(options.threads) {}

Result<std::unique_ptr<Context>> make_context(const ContextOptions& options) {
  if (options.device != "cpu") {
    if (options.device == "cuda" || options.device == "gpu") {
      cuda::DeviceQuery q = cuda::query_devices();
      return unsupported("--device " + options.device +
                         ": the CUDA compute backend is not part of this build yet (" +
                         (q.devices.empty() ? q.note : "found " + q.devices[0].name) +
                         "); use --device cpu");
    }
    return invalid_argument("--device must be cpu or cuda (got '" + options.device + "')");
  }
  auto ctx = std::make_unique<Context>(options);
  ctx->backend = compute::make_cpu_backend(ctx->pool);
  return ctx;
}

}  // namespace strata::runtime
