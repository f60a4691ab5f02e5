#!/usr/bin/env python3
"""A user's job on a GPU host: a random-weight Hugging Face model directory of a named strata shape
(transformers' from_config on the GPU, saved with save_pretrained in bf16) with the Llama 2
tokenizer of tests/data (vocabulary 32000: Llama 2 and Mistral shapes), and a JSONL job of requests
whose prompts are token ids of lengths spread evenly over [--prompt-min, --prompt-max], each with
--max-tokens. `strata generate --model OUT/model --input OUT/job.jsonl` then runs it.

    python3 bench/make_hf_job.py --shape llama-2-7b --out /tmp/job --requests 96 \\
        --prompt-min 64 --prompt-max 512 --max-tokens 32 [--layers N]
"""
import argparse
import json
import pathlib
import random
import shutil

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama-2-7b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--prompt-min", type=int, default=64)
    ap.add_argument("--prompt-max", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--layers", type=int, default=0, help="fewer layers than the shape (0: as the shape)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    root = pathlib.Path(__file__).resolve().parent.parent
    cfg = json.loads((root / "models" / "shapes" / f"{a.shape}.json").read_text())
    if cfg.get("vocab_size") != 32000:
        raise SystemExit(f"{a.shape}: the bundled tokenizer has 32000 tokens, the shape {cfg.get('vocab_size')}")
    if a.layers > 0:
        cfg["num_hidden_layers"] = a.layers
    out = pathlib.Path(a.out)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    tok = root / "tests" / "data" / "tokenizers" / "llama2"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / name, model_dir / name)

    rng = random.Random(a.seed)
    with open(out / "job.jsonl", "w") as f:
        for i in range(a.requests):
            n = a.prompt_min + (a.prompt_max - a.prompt_min) * i // max(1, a.requests - 1)
            ids = [1] + [rng.randrange(4, 32000) for _ in range(n - 1)]
            f.write(json.dumps({"custom_id": f"r{i}", "prompt": ids, "max_tokens": a.max_tokens}) + "\n")
    print(json.dumps({"model": str(model_dir), "input": str(out / "job.jsonl"), "requests": a.requests}))


if __name__ == "__main__":
    main()
