// The libFuzzer entry of one target: STRATA_FUZZ_TARGET names its function in fuzz_targets.h.
#include "fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return strata::fuzz::STRATA_FUZZ_TARGET(data, size);
}
