#!/usr/bin/env python3
"""A user's job on a GPU host: a random-weight Hugging Face model directory of a named strata shape
(transformers' from_config on the GPU, saved with save_pretrained in bf16) with the Llama 2
tokenizer of tests/data (vocabulary 32000; a shape with a larger one, Llama 3's 128256, keeps its
own, and the generated ids past 32000 have no text), and a JSONL job of requests whose prompts
are token ids of lengths spread evenly over [--prompt-min, --prompt-max], each with --max-tokens.
`strata generate --model OUT/model --input OUT/job.jsonl` then runs it.

    python3 bench/make_hf_job.py --shape llama-2-7b --out /tmp/job --requests 96 \\
        --prompt-min 64 --prompt-max 512 --max-tokens 32 [--layers N]

With --tail MIN:MEAN:MAX each request's max_tokens is drawn instead from a long-tailed (log-normal)
distribution cut to [MIN, MAX] with about that mean, and the requests carry ignore_eos, so each
answer is exactly its max_tokens long (a mixed-length job); the prompts are then shuffled too.
--job-only writes the job without the model. --response-format FILE gives every --constrained-every-th
request (from the first) that response_format (a JSON file: {"type": "json_schema", ...} or
{"type": "json_object"}), for structured output's cost against the same job unconstrained.
"""
import argparse
import json
import math
import pathlib
import random
import shutil
import sys


def tail_lengths(spec, count, rng):
    """count lengths, log-normal (sigma 0.9) cut to [lo, hi], the median fitted for about `mean`."""
    lo, mean, hi = (int(x) for x in spec.split(":"))

    def draw(median, r):
        while True:
            x = int(r.lognormvariate(math.log(median), 0.9))
            if lo <= x <= hi:
                return x

    median = float(mean)
    for _ in range(30):  # the cut moves the mean: fit the median on a fixed sample
        r = random.Random(7)
        median *= mean / (sum(draw(median, r) for _ in range(4000)) / 4000)
    return [draw(median, rng) for _ in range(count)]


def write_model(cfg, model_dir, root, seed):
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    tok = root / "tests" / "data" / "tokenizers" / "llama2"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / name, model_dir / name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama-2-7b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--prompt-min", type=int, default=64)
    ap.add_argument("--prompt-max", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--tail", default="", help="MIN:MEAN:MAX: long-tailed max_tokens, with ignore_eos")
    ap.add_argument("--layers", type=int, default=0, help="fewer layers than the shape (0: as the shape)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--job-only", action="store_true", help="write the job, not the model")
    ap.add_argument("--response-format", default="", help="JSON file: a response_format for the constrained requests")
    ap.add_argument("--constrained-every", type=int, default=1, help="every K-th request takes --response-format")
    a = ap.parse_args()

    root = pathlib.Path(__file__).resolve().parent.parent
    cfg = json.loads((root / "models" / "shapes" / f"{a.shape}.json").read_text())
    if cfg.get("vocab_size", 0) < 32000:
        raise SystemExit(f"{a.shape}: the bundled tokenizer has 32000 tokens, the shape only {cfg.get('vocab_size')}")
    if cfg["vocab_size"] > 32000:
        # A larger vocabulary (Llama 3's 128256) keeps the shape's LM head and embedding; the text
        # of a generated id the tokenizer does not have is left out, its token still counted.
        print(f"{a.shape}: vocabulary {cfg['vocab_size']}, decoded with the bundled 32000-token tokenizer",
              file=sys.stderr)
    if a.layers > 0:
        cfg["num_hidden_layers"] = a.layers
    out = pathlib.Path(a.out)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    if not a.job_only:
        write_model(cfg, model_dir, root, a.seed)

    response_format = json.loads(pathlib.Path(a.response_format).read_text()) if a.response_format else None
    rng = random.Random(a.seed)
    prompts = [a.prompt_min + (a.prompt_max - a.prompt_min) * i // max(1, a.requests - 1) for i in range(a.requests)]
    lengths = [a.max_tokens] * a.requests
    if a.tail:
        lengths = tail_lengths(a.tail, a.requests, rng)
        rng.shuffle(prompts)
    with open(out / "job.jsonl", "w") as f:
        for i in range(a.requests):
            ids = [1] + [rng.randrange(4, 32000) for _ in range(prompts[i] - 1)]
            req = {"custom_id": f"r{i}", "prompt": ids, "max_tokens": lengths[i]}
            if a.tail:
                req["ignore_eos"] = True
            if response_format and i % max(1, a.constrained_every) == 0:
                req["response_format"] = response_format
            f.write(json.dumps(req) + "\n")
    print(json.dumps({"model": str(model_dir), "input": str(out / "job.jsonl"), "requests": a.requests,
                      "mean_prompt": sum(prompts) / len(prompts), "mean_max_tokens": sum(lengths) / len(lengths)}))


if __name__ == "__main__":
    main()
