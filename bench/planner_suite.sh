#!/usr/bin/env bash
# The planner validation suite on a GPU host: for each case of bench/planner_suite.cases, the
# planner's choice and its next runners-up (strata bench --rank K), each measured, beside the
# prediction; then a Markdown table (predicted, measured, measured / predicted, and whether the
# choice was within 10% of the fastest measured alternative) and the JSON of every run in $OUT.
#   bench/planner_suite.sh [-r RANKS] [-c CASE,CASE...] [-- extra strata bench arguments]
# RANKS (default 4): the choice and RANKS - 1 runners-up. Extra arguments go to every run (e.g.
# --hardware my-profile.json). Needs build-gpu/tools/strata (bench/offload_build.sh).
set -uo pipefail
ranks=4
only=""
while getopts "r:c:" opt; do
  case $opt in
    r) ranks=$OPTARG ;;
    c) only=",$OPTARG," ;;
    *) echo "usage: $0 [-r RANKS] [-c CASE,...] [-- strata bench args]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == "--" ]] && shift
out=${OUT:-bench/out}
mkdir -p "$out"
strata=${STRATA:-build-gpu/tools/strata}
here=$(dirname "$0")
while IFS='|' read -r name args most; do
  [[ -z $name || $name == \#* ]] && continue
  [[ -n $only && $only != *",$name,"* ]] && continue
  n=$ranks
  [[ -n ${most:-} && $most -lt $n ]] && n=$most
  for ((k = 1; k <= n; k++)); do
    # shellcheck disable=SC2086
    if ! $strata bench $args --rank "$k" --json "$@" >"$out/$name-r$k.json" 2>"$out/$name-r$k.log"; then
      echo "$name rank $k: failed: $(tail -1 "$out/$name-r$k.log")" >&2
      rm -f "$out/$name-r$k.json"
    fi
  done
done <"$here/planner_suite.cases"
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
runs = {}
for f in sorted(glob.glob(os.path.join(out, "*-r*.json"))):
    name, rank = os.path.basename(f)[:-5].rsplit("-r", 1)
    try:
        j = json.load(open(f))
    except ValueError:
        continue
    runs.setdefault(name, {})[int(rank)] = j
print("| case | rank | batch | weights / kv / attention | predicted tok/s | measured tok/s | measured / predicted | decode step pred / meas s | GPU peak GiB |")
print("|---|---:|---|---|---:|---:|---:|---|---:|")
summary = []
for name, by_rank in runs.items():
    fastest = max(r["measured"]["tokens_per_s"] for r in by_rank.values())
    for rank in sorted(by_rank):
        j = by_rank[rank]
        p, m, pol = j["predicted"], j["measured"], j["policy"]
        ch = f'{pol["weights"]["compression"]} / {pol["kv_cache"]["compression"]} / {pol["kv_cache"]["attention"]}'
        ratio = m["tokens_per_s"] / p["tokens_per_s"] if p["tokens_per_s"] else float("nan")
        print(f'| {name} | {rank} | {j["gpu_batch_size"]} x {j["num_gpu_batches"]} | {ch} | {p["tokens_per_s"]:.1f} | '
              f'{m["tokens_per_s"]:.1f} | {ratio:.2f} | {p["decode_step_s"]:.3f} / {m["decode_step_s"]:.3f} | '
              f'{j["memory_bytes"]["gpu_peak"] / 2**30:.2f} |')
    if 1 in by_rank:
        chosen = by_rank[1]
        ratio = chosen["measured"]["tokens_per_s"] / chosen["predicted"]["tokens_per_s"]
        summary.append(f'{name}: measured / predicted {ratio:.2f} ({"in" if 0.85 <= ratio <= 1.15 else "OUT of"} 0.85-1.15); '
                       f'the choice at {chosen["measured"]["tokens_per_s"] / fastest:.2f} of the fastest of {len(by_rank)} '
                       f'({"within" if chosen["measured"]["tokens_per_s"] >= 0.9 * fastest else "NOT within"} 10%)')
print()
for line in summary:
    print("- " + line)
PY
