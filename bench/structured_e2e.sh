#!/usr/bin/env bash
# Structured output's cost end to end on a GPU host: the same job free, with every request under a
# JSON Schema (bench/data/extraction_schema.json), and free again at the constrained answers' own
# lengths (the constraint's own cost, the steps and batch sizes being the same), greedy and at
# temperature 1, on a random-weight model directory made by bench/make_hf_job.py; then a table of each run's wall
# time and generated tokens, the constrained job's time against the free one's, and whether every
# constrained answer that finished parses and validates (python3-jsonschema when installed).
#   bench/structured_e2e.sh [-s SHAPE] [-l LAYERS] [-n REQUESTS] [-m MAX_TOKENS] [-- generate args]
# Default: llama-2-13b cut to 8 layers, 512 requests of 64-512 prompt tokens, 192 new, and
# --gpu-mem 20GiB --cpu-mem 40GiB (the whole model on the GPU). Work in $WORK (default
# /tmp/structured-e2e); results in $OUT (default bench/out). Needs build-gpu/tools/strata.
set -euo pipefail
shape=llama-2-13b layers=8 requests=512 max_tokens=192
while getopts "s:l:n:m:" opt; do
  case $opt in
    s) shape=$OPTARG ;;
    l) layers=$OPTARG ;;
    n) requests=$OPTARG ;;
    m) max_tokens=$OPTARG ;;
    *) echo "usage: $0 [-s SHAPE] [-l LAYERS] [-n REQUESTS] [-m MAX_TOKENS] [-- generate args]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == "--" ]] && shift
extra=("$@")
[[ ${#extra[@]} -eq 0 ]] && extra=(--gpu-mem 20GiB --cpu-mem 40GiB)
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-/tmp/structured-e2e}
out=${OUT:-bench/out}
strata=${STRATA:-build-gpu/tools/strata}
mkdir -p "$work" "$out"
job=(--shape "$shape" --layers "$layers" --requests "$requests" --prompt-min 64 --prompt-max 512 --max-tokens "$max_tokens")
[[ -f $work/free/model/config.json ]] || python3 "$here/make_hf_job.py" "${job[@]}" --out "$work/free" >/dev/null
python3 "$here/make_hf_job.py" "${job[@]}" --job-only --out "$work/schema" \
  --response-format "$here/data/extraction_schema.json" >/dev/null
run() {  # run KIND T JOB
  rm -f "$out/structured-$1-t$2.jsonl"
  "$strata" generate --model "$work/free/model" --input "$3" \
    --output "$out/structured-$1-t$2.jsonl" --temperature "$2" --json-summary "$out/structured-$1-t$2.json" \
    --quiet "${extra[@]}"
}
for t in 0 1; do
  run free "$t" "$work/free/job.jsonl"
  run schema "$t" "$work/schema/job.jsonl"
  # The free job at the constrained answers' own lengths (ignore_eos): the same steps and batch
  # sizes without the constraint, so the difference is what the constraint itself costs.
  python3 - "$work/free/job.jsonl" "$out/structured-schema-t$t.jsonl" "$work/same-t$t.jsonl" <<'PY'
import json, sys
free, constrained, same = sys.argv[1:4]
length = {}
for line in open(constrained):
    r = json.loads(line)
    length[r["custom_id"]] = r["response"]["body"]["usage"]["completion_tokens"]
with open(same, "w") as f:
    for line in open(free):
        r = json.loads(line)
        r["max_tokens"] = max(1, length[r["custom_id"]])
        r["ignore_eos"] = True
        f.write(json.dumps(r) + "\n")
PY
  run same "$t" "$work/same-t$t.jsonl"
done
python3 - "$out" "$here/data/extraction_schema.json" <<'PY'
import json, sys
out, schema_file = sys.argv[1], sys.argv[2]
schema = json.load(open(schema_file))["json_schema"]["schema"]
try:
    import jsonschema
except ImportError:
    jsonschema = None
print("| temperature | job | wall s | generated tokens | constrained / free (wall) | constrained / free at its lengths (wall) "
      "| steps | refills | tokens a step | sampled a step | model s | waiting for allowed sets s | choosing s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in (0, 1):
    summary = {k: json.load(open(f"{out}/structured-{k}-t{t}.json")) for k in ("free", "schema", "same")}
    for kind, name in (("free", "free"), ("schema", "schema"), ("same", "free at the schema answers' lengths")):
        s = summary[kind]
        ratios = (f'{s["wall_s"] / summary["free"]["wall_s"]:.3f} | {s["wall_s"] / summary["same"]["wall_s"]:.3f}'
                  if kind == "schema" else " | ")
        st = s["steps"]
        n = max(1, st["count"])
        print(f'| {t} | {name} | {s["wall_s"]:.2f} | {s["completion_tokens"]} | {ratios} | {st["count"]} | {s["refills"]} '
              f'| {st["tokens"] / n:.1f} | {st["sampled_rows"] / n:.1f} | {st["model_s"]:.2f} '
              f'| {st["mask_wait_s"]:.2f} | {st["choose_s"]:.2f} |')
    valid = invalid = cut = 0
    for line in open(f"{out}/structured-schema-t{t}.jsonl"):
        choice = json.loads(line)["response"]["body"]["choices"][0]
        if choice["finish_reason"] == "length":
            cut += 1
            continue
        try:
            value = json.loads(choice["text"])
            if jsonschema:
                jsonschema.validate(value, schema)
            valid += 1
        except Exception:
            invalid += 1
    check = "validated with jsonschema" if jsonschema else "parsed as JSON (jsonschema not installed)"
    print(f"\ntemperature {t}: {valid} answers {check}, {invalid} not, {cut} stopped at max_tokens", file=sys.stderr)
PY
