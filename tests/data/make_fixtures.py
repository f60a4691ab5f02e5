#!/usr/bin/env python3
"""Builds the tiny Hugging Face fixtures strata's model tests compare against.

Each fixture is a seeded-random model built from a config with transformers (nothing is
downloaded), saved as config.json + model.safetensors, with reference outputs computed by
transformers itself in float32 with eager attention:

  reference.json         prompts (token ids), greedy continuations, top-2 logit margins, versions
  reference.safetensors  prompt{i}.logits [prompt_len, vocab]: logits at every prompt position
                         prompt{i}.step_logits [steps, vocab]: last-position logits at each greedy step

The greedy reference recomputes the whole sequence at every step (no KV cache), so it is the
plain math of the model. Run on a machine with torch and transformers:
    python3 tests/data/make_fixtures.py tests/data/fixtures [NAME...]
"""
import json
import math
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

VOCAB = 200
STEPS = 20
PROMPT_LENS = [5, 11, 8]


def opt_pre_ln():
    return transformers.OPTConfig(
        vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, do_layer_norm_before=True,
        word_embed_proj_dim=64, pad_token_id=1, bos_token_id=2, eos_token_id=2,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def opt_post_ln_proj():
    # Like opt-350m: post-LayerNorm and word_embed_proj_dim != hidden_size (project_in/out).
    return transformers.OPTConfig(
        vocab_size=VOCAB, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, do_layer_norm_before=False,
        word_embed_proj_dim=32, pad_token_id=1, bos_token_id=2, eos_token_id=2,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def llama_gqa_llama3():
    # GQA (4 query heads, 2 kv heads) and llama3 RoPE scaling whose three frequency bands
    # (kept, smoothed, divided by factor) all occur at head_dim 16.
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        bos_token_id=1, eos_token_id=[2, 3], tie_word_embeddings=False)


def qwen2_bias_tied():
    return transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=2, use_sliding_window=False)


def mistral_window_head_dim():
    # Explicit head_dim (32) != hidden_size / heads (16), and a sliding window shorter than the
    # sequences, so both change the result.
    return transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
        sliding_window=6, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def qwen3_head_dim_tied():
    # q_norm/k_norm over each head, explicit head_dim (32 != 64/4), tied embeddings.
    return transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=2, use_sliding_window=False)


def mixtral_window():
    # 4 experts, top-2, and a sliding window shorter than the sequences.
    return transformers.MixtralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=1000000.0, sliding_window=6, num_local_experts=4,
        num_experts_per_tok=2, router_jitter_noise=0.0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False)


def qwen3_moe_dense_layer():
    # 8 experts, top-3 renormalised (norm_topk_prob); layer 1 of 3 is a dense MLP
    # (mlp_only_layers) with its own intermediate_size.
    return transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
        num_experts=8, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[1], tie_word_embeddings=False, bos_token_id=None, eos_token_id=2,
        use_sliding_window=False)


def qwen3_moe_sparse_step():
    # Every second layer sparse (decoder_sparse_step 2: layer 0 dense, layer 1 sparse), top-2
    # without renormalisation (norm_topk_prob false), tied embeddings.
    return transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
        num_experts=6, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=2,
        mlp_only_layers=[], tie_word_embeddings=True, bos_token_id=None, eos_token_id=2,
        use_sliding_window=False)


FIXTURES = {
    "opt_pre_ln": (opt_pre_ln, torch.float32),
    "opt_post_ln_proj": (opt_post_ln_proj, torch.float32),
    "llama_gqa_llama3": (llama_gqa_llama3, torch.float32),
    "qwen2_bias_tied": (qwen2_bias_tied, torch.float32),
    "mistral_window_head_dim": (mistral_window_head_dim, torch.float32),
    # Same architecture as llama_gqa_llama3, stored in bf16: exercises bf16 weights.
    "llama_bf16": (llama_gqa_llama3, torch.bfloat16),
    "qwen3_head_dim_tied": (qwen3_head_dim_tied, torch.float32),
    "mixtral_window": (mixtral_window, torch.float32),
    "qwen3_moe_dense_layer": (qwen3_moe_dense_layer, torch.float32),
    "qwen3_moe_sparse_step": (qwen3_moe_sparse_step, torch.float32),
}

# Fixtures also saved with experts fused into 3D tensors (save_original_format=False), the layout
# transformers 5 uses in memory and that checkpoints released since may carry: written to
# <name>_fused with the same reference files.
FUSED_TOO = ["mixtral_window"]


def randomise(model, gen):
    """Re-initialise every parameter so logits are well separated (transformers' default init,
    std 0.02, gives near-uniform logits and near-tie greedy choices)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:  # [out, in], or [experts, out, in] for fused experts
                fan_in = p.shape[-1]
                if "embed" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def build(name, make_config, dtype, out_dir, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = make_config()
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    randomise(model, gen)
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    if dtype != torch.float32:
        model = model.to(dtype)
        model.save_pretrained(path, safe_serialization=True)
        model = model.to(torch.float32)  # reference math in fp32 on the bf16-rounded weights
    else:
        model.save_pretrained(path, safe_serialization=True)

    prompts = [torch.randint(4, VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    tensors, records = {}, []
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([prompt])
            logits = model(input_ids=ids).logits[0].float()
            tensors[f"prompt{i}.logits"] = logits.contiguous()
            seq = list(prompt)
            step_logits, margins = [], []
            for _ in range(STEPS):
                last = model(input_ids=torch.tensor([seq])).logits[0, -1].float()
                top2 = torch.topk(last, 2).values
                margins.append(float(top2[0] - top2[1]))
                step_logits.append(last)
                seq.append(int(torch.argmax(last)))
            tensors[f"prompt{i}.step_logits"] = torch.stack(step_logits).contiguous()
            records.append({"prompt": prompt, "greedy": seq[len(prompt):],
                            "top2_margins": margins})
    if name in FUSED_TOO:
        fused = path + "_fused"
        os.makedirs(fused, exist_ok=True)
        model.save_pretrained(fused, safe_serialization=True, save_original_format=False)
        save_file(tensors, os.path.join(fused, "reference.safetensors"))
    save_file(tensors, os.path.join(path, "reference.safetensors"))
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump({"fixture": name, "seed": seed, "weights_dtype": str(dtype).replace("torch.", ""),
                   "steps": STEPS, "prompts": records,
                   "made_with": {"torch": torch.__version__,
                                 "transformers": transformers.__version__},
                   "attn_implementation": "eager", "compute_dtype": "float32"}, f, indent=1)
    if name in FUSED_TOO:
        import shutil
        shutil.copy(os.path.join(path, "reference.json"), os.path.join(path + "_fused", "reference.json"))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"min top-2 margin {min(min(r['top2_margins']) for r in records):.4f}")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    only = set(sys.argv[2:])  # names to build; all when none are given
    for seed, (name, (make_config, dtype)) in enumerate(FIXTURES.items(), start=1000):
        if not only or name in only:
            build(name, make_config, dtype, out_dir, seed)


if __name__ == "__main__":
    main()
