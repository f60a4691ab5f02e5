#!/usr/bin/env python3
"""Makes a Mixtral-format mixture of experts from a dense Llama-format model directory: every
expert a copy of the layer's MLP (gate_proj -> w1, up_proj -> w3, down_proj -> w2) and a seeded
random router. The router's top k weights are renormalised to sum to 1, so whichever experts a
token wakes, the layer computes the dense MLP: the model is the dense one through the mixture of
experts' path (router, top-k, per-expert GEMMs, weighted scatter-add), with trained weights. Its
perplexity against the dense model's checks that path; with int4 weights, what int4 experts cost
on trained weights (each expert quantised as the dense MLP is).

Usage: python3 bench/upcycle_moe.py DENSE_DIR OUT_DIR [--experts 8] [--top-k 2] [--router-std 0.5]
Needs only the Python standard library (one model.safetensors of BF16, F16 or F32 tensors).
"""
import argparse
import json
import os
import random
import shutil
import struct

SIZES = {"BF16": 2, "F16": 2, "F32": 4}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    return header, data, meta


def random_tensor(dtype, count, std, rng):
    values = [rng.gauss(0.0, std) for _ in range(count)]
    if dtype == "F32":
        return struct.pack(f"<{count}f", *values)
    if dtype == "F16":
        return struct.pack(f"<{count}e", *values)
    # BF16: the high half of each F32, rounded to nearest even.
    out = bytearray()
    for bits in struct.unpack(f"<{count}I", struct.pack(f"<{count}f", *values)):
        bits += 0x7FFF + ((bits >> 16) & 1)
        out += struct.pack("<H", (bits >> 16) & 0xFFFF)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dense")
    ap.add_argument("out")
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--router-std", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.top_k <= args.experts:
        ap.error("--top-k must be in [1, --experts]")
    config = json.load(open(os.path.join(args.dense, "config.json")))
    if config.get("model_type") != "llama":
        raise SystemExit(f"{args.dense}: model_type {config.get('model_type')!r}, expected 'llama'")
    header, data, meta = read_safetensors(os.path.join(args.dense, "model.safetensors"))
    rng = random.Random(args.seed)
    hidden = config["hidden_size"]

    tensors = []  # (name, dtype, shape, bytes)
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = t["data_offsets"]
        raw = data[begin:end]
        parts = name.split(".")
        if ".mlp." not in name:
            tensors.append((name, t["dtype"], t["shape"], raw))
            continue
        layer = ".".join(parts[:3])  # model.layers.N
        proj = parts[4]
        w = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}[proj]
        for e in range(args.experts):
            tensors.append((f"{layer}.block_sparse_moe.experts.{e}.{w}.weight", t["dtype"], t["shape"], raw))
        if proj == "gate_proj":
            dtype = t["dtype"]
            tensors.append((f"{layer}.block_sparse_moe.gate.weight", dtype, [args.experts, hidden],
                            random_tensor(dtype, args.experts * hidden, args.router_std / hidden ** 0.5, rng)))

    os.makedirs(args.out, exist_ok=True)
    out_header, offset = {}, 0
    for name, dtype, shape, raw in tensors:
        out_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    if meta is not None:
        out_header["__metadata__"] = meta
    blob = json.dumps(out_header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, _, _, raw in tensors:
            f.write(raw)

    config.update(model_type="mixtral", architectures=["MixtralForCausalLM"], num_local_experts=args.experts,
                  num_experts_per_tok=args.top_k, sliding_window=None, output_router_logits=False,
                  router_aux_loss_coef=0.001, router_jitter_noise=0.0)
    for key in ("mlp_bias", "pretraining_tp"):
        config.pop(key, None)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja",
                 "special_tokens_map.json"):
        src = os.path.join(args.dense, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))
    print(json.dumps({"out": args.out, "experts": args.experts, "top_k": args.top_k, "tensors": len(tensors),
                      "bytes": offset}))


if __name__ == "__main__":
    main()
