// The build without CUDA: a pinner whose pin() says why it cannot pin, so a HostArena given it
// warns and stays pageable (use storage::make_mlock_pinner() to keep pages resident instead).
#include <string>

#include "common/units.h"
#include "cuda/host_pinner.h"

namespace strata::cuda {
namespace {

class NoCudaHostPinner final : public storage::HostPinner {
 public:
  std::string_view name() const override { return "cudaHostRegister (not built)"; }
  MemoryKind pinned_kind() const override { return MemoryKind::kPinned; }
  Status pin(void*, size_t bytes) override {
    return unsupported("cannot pin " + format_bytes(bytes) +
                       " of host memory for a GPU: strata was built without CUDA (no nvcc found, "
                       "or STRATA_CUDA=OFF); rebuild with CUDA, or pin with mlock for a CPU run");
  }
  void unpin(void*, size_t) override {}
};

}  // namespace

std::unique_ptr<storage::HostPinner> make_cuda_host_pinner(int) {
  return std::make_unique<NoCudaHostPinner>();
}

}  // namespace strata::cuda
