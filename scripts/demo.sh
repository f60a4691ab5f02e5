#!/usr/bin/env bash
# make demo: a generation on a small model in the repository.
# strata's text front door (`strata generate` with a tokenizer) and its trained demo model are not
# in the repository yet, so this runs a greedy continuation of token ids on one of the tiny
# Hugging Face test models and compares it with the continuation transformers produced.
set -euo pipefail
strata=${1:-build/tools/strata}
root=$(cd "$(dirname "$0")/.." && pwd)
model="$root/tests/data/fixtures/llama_gqa_llama3"
demo="$root/examples/token-demo"

echo "== strata demo: greedy continuation of token ids (no tokenizer or trained model yet) =="
echo "model: tests/data/fixtures/llama_gqa_llama3, a tiny seeded-random Llama (GQA, llama3 RoPE)"
echo "built by transformers; its continuations are in examples/token-demo/transformers-greedy.txt"
echo
"$strata" info --model "$model"
echo
args=()
while IFS= read -r p; do args+=(--tokens "$p"); done < "$demo/prompts.txt"
out=$("$strata" complete --model "$model" "${args[@]}" --max-tokens 20 --ignore-eos)
echo "$out"
echo
i=0
status=0
while IFS= read -r want; do
  got=$(sed -n "s/^\[$i\] generated: \([0-9 ]*[0-9]\).*/\1/p" <<< "$out")
  if [ "$got" = "$want" ]; then verdict="same as transformers"; else verdict="DIFFERS from transformers: $want"; status=1; fi
  echo "[$i] $verdict"
  i=$((i + 1))
done < "$demo/transformers-greedy.txt"
exit $status
