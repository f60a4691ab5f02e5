#include "cuda/device.h"

namespace strata::cuda {

DeviceQuery query_devices() {
  DeviceQuery q;
  q.built_with_cuda = false;
  q.note = "strata was built without CUDA (no nvcc found, or STRATA_CUDA=OFF)";
  return q;
}

void set_chained_launches(bool) {}
bool chained_launches() { return false; }
void set_attention_cluster_merge(bool) {}
bool attention_cluster_merge() { return false; }

}  // namespace strata::cuda
