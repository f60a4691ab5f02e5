// The offloading engine's fixed GPU cost per (layer, GPU batch), measured through the engine on a
// GPU: every fixed field comes out positive from fits over the layer counts, and the text records
// the samples. Skips without a GPU.
#include "offload/engine_profile.h"

#include <gtest/gtest.h>

#include "cuda/device.h"
#include "runtime/context.h"
#include "testing/test_data.h"

namespace strata::offload {
namespace {

TEST(EngineProfile, FixedCostsPerLayerComeFromTheEnginesGpuTime) {
  if (cuda::query_devices().devices.empty()) GTEST_SKIP() << "no CUDA device";
  runtime::ContextOptions co;
  co.device = "cuda";
  co.threads = 4;
  auto ctx = runtime::make_context(co);
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  EngineFixedOptions o =
      engine_fixed_options(/*quick=*/true, testing::make_temp_dir("engine-profile"));
  o.decode_steps = 4;
  int calls = 0;
  auto r = measure_engine_fixed_costs(*(*ctx)->backend, (*ctx)->pool, o, (*ctx)->logger,
                                      [&](const std::string&, int done, int total) {
                                        ++calls;
                                        EXPECT_LE(done, total);
                                      });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(calls, 1 + 2 * static_cast<int>(o.layer_counts.size()));
  EXPECT_GT(r->fixed.prefill_layer_us, 0);
  EXPECT_GT(r->fixed.decode_layer_us, 0);
  EXPECT_GT(r->fixed.decode_split_layer_us, 0);
  EXPECT_EQ(r->decode_samples.size(), o.layer_counts.size());
  // CPU attention calls of the split engines: per call, more than nothing, and less than a
  // millisecond over the tiny model's KV.
  EXPECT_EQ(r->cpu_attention_samples.size(), o.layer_counts.size());
  EXPECT_GT(r->cpu_attention_call_us, 0);
  EXPECT_LT(r->cpu_attention_call_us, 1000);
  for (const char* s :
       {"gpu.fixed.prefill_layer_us", "gpu.fixed.decode_split_layer_us", "rms relative error"})
    EXPECT_NE(r->text.find(s), std::string::npos) << s;
}

TEST(EngineProfile, TheCpuBackendIsRefused) {
  runtime::ContextOptions co;
  co.device = "cpu";
  co.threads = 1;
  auto ctx = runtime::make_context(co);
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  auto r = measure_engine_fixed_costs(*(*ctx)->backend, (*ctx)->pool,
                                      engine_fixed_options(true, "."), (*ctx)->logger, {});
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("CUDA backend"), std::string::npos);
}

}  // namespace
}  // namespace strata::offload
