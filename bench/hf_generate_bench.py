#!/usr/bin/env python3
"""transformers' own generate() on a named strata shape with random fp16 weights on the GPU:
greedy, batch B, IN prompt tokens, OUT new tokens (default 64, 512, 32). Prints one JSON line with
the median of the timed runs; the baseline strata_cuda_bench --throughput is compared against.

    python3 bench/hf_generate_bench.py --shape llama-3-8b [--batch 64 --in 512 --out 32 --reps 3]
"""
import argparse
import json
import pathlib
import statistics
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama-3-8b")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--in", dest="prompt", type=int, default=512)
    ap.add_argument("--out", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--commit", default="unknown")
    a = ap.parse_args()

    root = pathlib.Path(__file__).resolve().parent.parent
    cfg_dict = json.loads((root / "models" / "shapes" / f"{a.shape}.json").read_text())
    config = transformers.AutoConfig.for_model(**cfg_dict)
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float16)
        except TypeError:  # transformers before 4.56 spells it torch_dtype
            model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float16)
    model.eval()
    ids = torch.randint(3, config.vocab_size, (a.batch, a.prompt), device="cuda")
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=False, min_new_tokens=a.out, max_new_tokens=a.out,
              pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        model.generate(ids, **dict(kw, min_new_tokens=2, max_new_tokens=2))  # warm-up
        times = []
        for _ in range(a.reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    assert out.shape[1] == a.prompt + a.out, out.shape
    med = statistics.median(times)
    print(json.dumps({
        "bench": "generate", "loop": "transformers.generate", "model": a.shape,
        "batch": a.batch, "in": a.prompt, "out": a.out, "reps": a.reps,
        "min_ms": round(min(times) * 1e3, 1), "median_ms": round(med * 1e3, 1),
        "max_ms": round(max(times) * 1e3, 1),
        "tokens_per_s": round(a.batch * a.out / med, 1),
        "device": torch.cuda.get_device_name(0), "commit": a.commit,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": model.config._attn_implementation,
    }), flush=True)


if __name__ == "__main__":
    main()
