#!/usr/bin/env python3
"""Trains strata's demo model: a byte-level BPE tokenizer and a small Llama-architecture model
(RMSNorm, RoPE, SwiGLU, grouped-query attention, tied embeddings) on the text that
tools/train/prepare_data.py collects from Debian packages. Needs torch, transformers and
tokenizers, and a GPU to finish in minutes.

Usage: python3 tools/train/train.py DATA_DIR OUT_DIR [--minutes 5] [--arch llama|mixtral]
                                    [--tokenizer TOKENIZER_JSON]
--arch mixtral trains a mixture of experts of the same width and depth (8 experts of 512, the top 2
a token, so a token's MLP is as wide as the dense model's 1024; the router's load-balancing loss
added), for measuring what int4 experts cost on trained weights. --tokenizer reuses a trained
tokenizer (the demo's) so the models' perplexities on the same text compare.
Writes a Hugging Face model directory (config.json, model.safetensors in bf16, tokenizer.json,
tokenizer_config.json, generation_config.json), train_log.json (losses, settings, versions) and
reference.json (greedy continuations of a few prompts computed by transformers from the saved
bf16 weights in fp32).
"""
import argparse
import json
import math
import os
import random
import time

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SEPARATOR = "\x1e"
VOCAB = 8192
SEQ = 256
BATCH = 64
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
          " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
PROMPTS = ["In the beginning", "The meaning of life is", "And the LORD said unto Moses,",
           "A computer is", "Love is", "The best thing about Linux is"]


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d.strip("\n") for d in f.read().split("\n" + SEPARATOR + "\n") if d.strip()]


def train_tokenizer(train_path):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2,
                                  special_tokens=["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([train_path], trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return tok


def token_stream(tok, docs, bos, eos):
    ids = []
    for enc in tok.encode_batch(docs):  # each starts with <s> (post-processor)
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def batches(stream, gen, device):
    starts = torch.randint(0, len(stream) - SEQ - 1, (BATCH,), generator=gen)
    x = torch.stack([stream[s:s + SEQ + 1] for s in starts.tolist()]).to(device)
    return x[:, :-1], x[:, 1:]


@torch.no_grad()
def evaluate(model, stream, device):
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(stream) - SEQ - 1, SEQ * BATCH):
        chunk = [stream[i:i + SEQ + 1] for i in range(s, min(s + SEQ * BATCH, len(stream) - SEQ - 1), SEQ)]
        x = torch.stack(chunk).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                                 x[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--arch", choices=["llama", "mixtral"], default="llama")
    ap.add_argument("--tokenizer", help="a trained tokenizer.json to use instead of training one")
    args = ap.parse_args()
    t_start = time.time()
    torch.manual_seed(0)
    device = "cuda"
    os.makedirs(args.out, exist_ok=True)

    train_path = os.path.join(args.data, "train.txt")
    tok = Tokenizer.from_file(args.tokenizer) if args.tokenizer else train_tokenizer(train_path)
    bos, eos, pad = tok.token_to_id("<s>"), tok.token_to_id("</s>"), tok.token_to_id("<pad>")
    train = token_stream(tok, read_docs(train_path), bos, eos)
    valid = token_stream(tok, read_docs(os.path.join(args.data, "valid.txt")), bos, eos)
    print(f"tokens: train {len(train)}, valid {len(valid)}", flush=True)

    shape = dict(vocab_size=VOCAB, hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                 num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
                 tie_word_embeddings=True, attention_dropout=0.1, bos_token_id=bos, eos_token_id=eos,
                 pad_token_id=pad)
    if args.arch == "mixtral":
        config = transformers.MixtralConfig(intermediate_size=512, num_local_experts=8, num_experts_per_tok=2,
                                            sliding_window=None, router_aux_loss_coef=0.02, **shape)
    else:
        config = transformers.LlamaConfig(intermediate_size=1024, **shape)
    model = transformers.AutoModelForCausalLM.from_config(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = 100
    gen = torch.Generator().manual_seed(1)
    log, best, best_state, step = [], float("inf"), None, 0
    budget = args.minutes * 60
    t_train = time.time()
    while step < args.max_steps and time.time() - t_train < budget:
        frac = step / args.max_steps  # cosine decay over the planned steps
        lr = 2e-3 * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batches(train, gen, device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(input_ids=x, **({"output_router_logits": True} if args.arch == "mixtral" else {}))
        loss = torch.nn.functional.cross_entropy(out.logits.float().reshape(-1, VOCAB), y.reshape(-1))
        if getattr(out, "aux_loss", None) is not None:  # the router's load balancing
            loss = loss + config.router_aux_loss_coef * out.aux_loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            val = evaluate(model, valid, device)
            log.append({"step": step, "train_loss": loss.item(), "valid_loss": val,
                        "seconds": time.time() - t_train})
            print(f"step {step} train {loss.item():.3f} valid {val:.3f} ppl {math.exp(val):.1f}", flush=True)
            if val < best:
                best = val
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)

    model.to(torch.bfloat16).save_pretrained(args.out, safe_serialization=True)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>", chat_template=CHATML)
    fast.save_pretrained(args.out)

    # Reference: transformers' greedy continuations from the saved bf16 weights, in fp32.
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
    ref_tok = transformers.AutoTokenizer.from_pretrained(args.out)
    refs = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = ref_tok(p, return_tensors="pt").input_ids
            seq, margins = ids[0].tolist(), []
            for _ in range(32):
                last = ref_model(input_ids=torch.tensor([seq])).logits[0, -1]
                top2 = torch.topk(last, 2).values
                margins.append(float(top2[0] - top2[1]))
                seq.append(int(torch.argmax(last)))
            gen_ids = seq[ids.shape[1]:]
            refs.append({"prompt": p, "prompt_ids": ids[0].tolist(), "greedy_ids": gen_ids,
                         "greedy_text": ref_tok.decode(gen_ids), "top2_margins": margins})
            print(repr(p), "->", repr(ref_tok.decode(gen_ids)), flush=True)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"made_with": {"torch": torch.__version__, "transformers": transformers.__version__},
                   "compute_dtype": "float32", "prompts": refs}, f, indent=1)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"parameters": n_params, "vocab": VOCAB, "seq_len": SEQ, "batch": BATCH,
                   "steps": step, "best_valid_loss": best, "best_valid_ppl": math.exp(best),
                   "train_tokens": len(train), "valid_tokens": len(valid), "log": log,
                   "wall_seconds": time.time() - t_start,
                   "versions": {"torch": torch.__version__, "transformers": transformers.__version__}},
                  f, indent=1)
    print(f"best valid loss {best:.4f} (ppl {math.exp(best):.2f}); {time.time() - t_start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
