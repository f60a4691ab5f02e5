// The build without CUDA: Lanes::create() says so, and no Lanes object can exist, so the other
// members are unreachable (they abort if reached).
#include "common/check.h"
#include "cuda/lanes.h"

namespace strata::cuda {

struct Lanes::Impl {};

Result<std::unique_ptr<Lanes>> Lanes::create(compute::Backend&, bool) {
  return unsupported(
      "GPU lanes: strata was built without CUDA (no nvcc found, or STRATA_CUDA=OFF); rebuild "
      "with CUDA for GPU offloading, or run with --device cpu");
}

Lanes::~Lanes() = default;

namespace {
[[noreturn]] void unreachable(const char* what) {
  STRATA_CHECK(false, std::string("Lanes::") + what + " in a build without CUDA");
  __builtin_unreachable();
}
}  // namespace

void Lanes::copy(Lane, void*, const void*, size_t) { unreachable("copy"); }
void Lanes::copy_2d(Lane, void*, size_t, const void*, size_t, size_t, size_t) {
  unreachable("copy_2d");
}
void Lanes::copy_device(void*, const void*, size_t) { unreachable("copy_device"); }
void Lanes::read_host(void*, const void*, size_t) { unreachable("read_host"); }
Event Lanes::record(Lane) { unreachable("record"); }
void Lanes::wait(Lane, const Event&) { unreachable("wait"); }
Status Lanes::host_wait(const Event&) { unreachable("host_wait"); }
bool Lanes::done(const Event&) { unreachable("done"); }
Status Lanes::synchronize() { unreachable("synchronize"); }
void Lanes::begin(Lane, const std::string&, uint64_t) { unreachable("begin"); }
void Lanes::end(Lane) { unreachable("end"); }
std::vector<LaneSpan> Lanes::take_spans() { unreachable("take_spans"); }
double Lanes::now_s() const { unreachable("now_s"); }
int Lanes::device() const { unreachable("device"); }
Result<Tensor> Lanes::allocate_device(DType, Shape, const std::string&) {
  unreachable("allocate_device");
}
Result<Tensor> Lanes::allocate_pinned(DType, Shape, const std::string&) {
  unreachable("allocate_pinned");
}
uint64_t Lanes::device_bytes_in_use() const { unreachable("device_bytes_in_use"); }
void Lanes::sample_memory() { unreachable("sample_memory"); }
uint64_t Lanes::peak_device_bytes() const { unreachable("peak_device_bytes"); }

}  // namespace strata::cuda
