// strata info: what a model is (from a Hugging Face directory, a strata weight store or a named
// shape), how big it is, and whether its weight files are complete and consistent.
#include <cstdio>

#include "commands.h"
#include "common/log.h"
#include "common/units.h"
#include "model/model_dir.h"
#include "model/shapes.h"
#include "planner/footprint.h"
#include "runtime/weight_store_source.h"
#include "storage/weight_store.h"

namespace strata::tools {

namespace {

void print_config(const model::ModelConfig& c) {
  std::printf("architecture   %s (%s family)\n", c.model_type.c_str(),
              c.family == model::Family::kOpt ? "OPT" : "Llama");
  std::printf("layers         %lld\n", static_cast<long long>(c.num_layers));
  std::printf("hidden         %lld (ffn %lld)\n", static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.intermediate_size));
  std::printf("heads          %lld query, %lld key/value, head_dim %lld\n",
              static_cast<long long>(c.num_heads), static_cast<long long>(c.num_kv_heads),
              static_cast<long long>(c.head_dim));
  if (c.is_moe()) {
    int64_t sparse = 0;
    for (int64_t i = 0; i < c.num_layers; ++i) sparse += c.is_sparse_layer(i);
    std::printf("experts        %lld per sparse layer, %lld per token (ffn %lld%s); %lld of %lld layers sparse\n",
                static_cast<long long>(c.num_experts), static_cast<long long>(c.experts_per_token),
                static_cast<long long>(c.expert_intermediate_size),
                c.norm_topk_prob ? ", weights renormalised" : "", static_cast<long long>(sparse),
                static_cast<long long>(c.num_layers));
  }
  std::printf("vocabulary     %lld\n", static_cast<long long>(c.vocab_size));
  std::printf("context        %lld tokens\n", static_cast<long long>(c.max_position_embeddings));
  std::printf("stored dtype   %s\n", std::string(dtype_name(c.torch_dtype)).c_str());
  auto f = planner::model_footprint(c, DType::kF16, DType::kF16);
  const double params = static_cast<double>(f.parameters);
  if (params >= 1e9) std::printf("parameters     %.2f B\n", params / 1e9);
  else std::printf("parameters     %.2f M\n", params / 1e6);
  std::printf("fp16 weights   %s (%s per layer)\n", format_bytes(f.total_weight_bytes).c_str(),
              format_bytes(f.layer_weight_bytes).c_str());
  std::printf("fp16 KV cache  %s per token\n", format_bytes(f.kv_bytes_per_token).c_str());
}

}  // namespace

void register_info(CLI::App& app, int* exit_code) {
  auto* cmd = app.add_subcommand("info", "Describe a model and check its weight files");
  static std::string dir, shape;
  auto* m = cmd->add_option("--model", dir, "Hugging Face model directory or strata weight store");
  auto* s = cmd->add_option("--model-shape", shape, "named shape (models/shapes), e.g. llama-3-8b");
  m->excludes(s);
  cmd->callback([exit_code] {
    if (!shape.empty()) {
      auto cfg = model::named_shape(shape);
      if (!cfg.is_ok()) {
        *exit_code = report("info", cfg.status());
        return;
      }
      print_config(*cfg);
      return;
    }
    if (dir.empty()) {
      *exit_code = report("info", invalid_argument("give --model DIR or --model-shape NAME"));
      return;
    }
    Logger log(LogLevel::kWarn);
    const bool store = storage::is_weight_store(dir);
    auto files = store ? runtime::open_weight_store_dir(dir, log) : model::open_model_dir(dir);
    if (!files.is_ok()) {
      *exit_code = report("info", files.status());
      return;
    }
    print_config(files->config);
    std::printf("weights        %scomplete and consistent\n", store ? "a strata weight store, " : "");
  });
}

}  // namespace strata::tools
