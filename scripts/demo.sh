#!/usr/bin/env bash
# make demo: a batch generation with the demo model in models/demo on examples/prompts.jsonl,
# on the GPU when one is usable, else on the CPU. Leaves examples/results.jsonl.
set -euo pipefail
strata=${1:-build/tools/strata}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

device=cpu
if "$strata" devices 2>/dev/null | grep -q '^  \[0\]'; then device=cuda; fi

echo "== strata demo: models/demo (a 12.6M-parameter Llama trained on the KJV Bible and fortunes)"
echo "== $(grep -c . examples/prompts.jsonl) requests from examples/prompts.jsonl, device $device"
"$strata" generate --model models/demo --input examples/prompts.jsonl \
  --output examples/results.jsonl --overwrite --device "$device" --progress-interval 5
echo
echo "== a few completions (all of them are in examples/results.jsonl)"
if command -v python3 >/dev/null; then
  python3 - examples/prompts.jsonl examples/results.jsonl <<'PY'
import json, sys
prompts = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    body = r.get("body", r)
    prompts[r["custom_id"]] = body.get("prompt") or body["messages"][-1]["content"]
for line in open(sys.argv[2]):
    r = json.loads(line)
    if r["custom_id"] not in ("genesis", "moses", "life", "love", "chat-love"):
        continue
    choice = r["response"]["body"]["choices"][0]
    text = choice.get("text") if "text" in choice else choice["message"]["content"]
    print(f"{prompts[r['custom_id']]!r} -> {text!r}")
PY
else
  head -n 3 examples/results.jsonl
fi
