#include <gtest/gtest.h>

#include "common/units.h"
#include "planner/hardware.h"

namespace strata::planner {
namespace {

TEST(Catalogue, EveryCardNamesWhatCudaReportsForIt) {
  for (const auto& h : hardware_catalogue()) EXPECT_FALSE(h.gpu.cuda_names.empty()) << h.name;
  for (const char* want : {"rtx-3090", "rtx-a6000", "l40s", "h200"}) {
    auto h = catalogue_hardware(want);
    ASSERT_TRUE(h.is_ok()) << want;
    EXPECT_NE(h->source.find("data sheet"), std::string::npos) << want;
  }
}

struct CudaCase {
  const char* cuda_name;
  uint64_t memory_bytes;  // as cudaGetDeviceProperties reports totalGlobalMem
  const char* entry;
};

class CudaName : public ::testing::TestWithParam<CudaCase> {};

TEST_P(CudaName, FindsTheEntryForTheCard) {
  auto h = catalogue_hardware_for_cuda_name(GetParam().cuda_name, GetParam().memory_bytes);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->name, GetParam().entry) << GetParam().cuda_name;
}

// The names CUDA reports for these cards (nvidia-smi --query-gpu=name prints the same).
INSTANTIATE_TEST_SUITE_P(
    Cards, CudaName,
    ::testing::Values(CudaCase{"Tesla T4", 15360 * kMiB, "t4-flexgen"},
                      CudaCase{"NVIDIA L4", 23034 * kMiB, "l4"},
                      CudaCase{"NVIDIA A10G", 23028 * kMiB, "a10g"},
                      CudaCase{"NVIDIA A100-SXM4-40GB", 40536 * kMiB, "a100-40gb"},
                      CudaCase{"NVIDIA A100-PCIE-40GB", 40536 * kMiB, "a100-40gb"},
                      CudaCase{"NVIDIA A100-SXM4-80GB", 81920 * kMiB, "a100-80gb"},
                      CudaCase{"NVIDIA A100 80GB PCIe", 81920 * kMiB, "a100-80gb"},
                      // The data-sheet entry, not the measured test host that has the same card.
                      CudaCase{"NVIDIA H100 80GB HBM3", 81559 * kMiB, "h100-sxm"},
                      CudaCase{"NVIDIA H100 PCIe", 81559 * kMiB, "h100-pcie"},
                      CudaCase{"NVIDIA GeForce RTX 4090", 24564 * kMiB, "rtx-4090"},
                      CudaCase{"NVIDIA GeForce RTX 3090", 24268 * kMiB, "rtx-3090"},
                      CudaCase{"NVIDIA RTX A6000", 48685 * kMiB, "rtx-a6000"},
                      CudaCase{"NVIDIA L40S", 46068 * kMiB, "l40s"},
                      CudaCase{"NVIDIA H200", 143771 * kMiB, "h200"},
                      // Normalised: case, spaces and punctuation, the vendor prefix.
                      CudaCase{"nvidia a100-sxm4-80gb", 0, "a100-80gb"},
                      CudaCase{"NVIDIA Tesla T4", 0, "t4-flexgen"},
                      // Same model number, a name the catalogue does not list: memory decides.
                      CudaCase{"NVIDIA A100-SXM4-80GB MIG 7g.80gb", 81920 * kMiB, "a100-80gb"},
                      CudaCase{"NVIDIA A100 PCIe 40GB custom", 40536 * kMiB, "a100-40gb"},
                      CudaCase{"NVIDIA H200 NVL", 143771 * kMiB, "h200"}));

TEST(Catalogue, AnUnknownCardIsNamedWithWhatToDo) {
  auto h = catalogue_hardware_for_cuda_name("NVIDIA B200", 0);
  ASSERT_FALSE(h.is_ok());
  EXPECT_EQ(h.status().code(), StatusCode::kNotFound);
  EXPECT_NE(h.status().message().find("'NVIDIA B200'"), std::string::npos);
  EXPECT_NE(h.status().message().find("strata profile"), std::string::npos);
  EXPECT_FALSE(catalogue_hardware_for_cuda_name("", 0).is_ok());
}

}  // namespace
}  // namespace strata::planner
