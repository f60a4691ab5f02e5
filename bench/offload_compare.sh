#!/usr/bin/env bash
# The offloading engine's end-to-end benchmark on this tree against a baseline tree, on one GPU
# host, one run after the other (baseline first) for each case, so the two are measured on the
# same machine within minutes. Builds the strata binary of each tree once (build-gpu here,
# build-base in the baseline) and keeps the builds for later calls on the same machine.
#   bench/offload_compare.sh BASE_TREE CASE...
# BASE_TREE: a directory or a .tar.gz of the baseline's sources (git archive). CASE: a name and
# the arguments of `strata bench` after it, as one word separated by '|':
#   "opt30b-flexgen|--model-shape opt-30b --prompt-len 512 --gen-len 32 --gpu-mem 24GiB ..."
# Writes $OUT (or bench/out)/NAME-base.json and NAME-new.json (strata bench --json) and logs, and
# prints one line per run: tokens/s, prefill s, decode step s, GPU peak.
set -uo pipefail
base=$1
shift
out=${OUT:-bench/out}
mkdir -p "$out"
if [[ -f .deps/remote-setup.sh ]]; then source .deps/remote-setup.sh >/dev/null 2>&1; fi

build_tree() {  # tree dir, build dir
  if [[ ! -x $2/tools/strata ]]; then
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCH=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/configure-$(basename "$2").log" 2>&1 &&
      cmake --build "$2" --target strata -j"$(nproc)" >"$out/build-$(basename "$2").log" 2>&1
  fi
  test -x "$2/tools/strata" || { echo "the build in $2 failed:"; grep -E "error" -A3 "$out/build-$(basename "$2").log" | head -20; exit 1; }
}

if [[ -f $base ]]; then
  mkdir -p base-tree
  [[ -f base-tree/CMakeLists.txt ]] || tar -xzf "$base" -C base-tree
  base=base-tree
fi
build_tree "$base" "$base/build-base" &
build_tree . build-gpu
wait || exit 1

summary() {  # json file
  python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
m, p = j["measured"], j["predicted"]
print(f"{m['tokens_per_s']:8.2f} tok/s (predicted {p['tokens_per_s']:.2f})  prefill {m['prefill_s']:7.2f} s  "
      f"decode step {m['decode_step_s']:7.4f} s  gpu peak {j['memory_bytes']['gpu_peak'] / 2**30:6.2f} GiB")
PY
}

for spec in "$@"; do
  name=${spec%%|*}
  args=${spec#*|}
  for side in base new; do
    bin=build-gpu/tools/strata
    [[ $side == base ]] && bin=$base/build-base/tools/strata
    # shellcheck disable=SC2086
    if $bin bench $args --json >"$out/$name-$side.json" 2>"$out/$name-$side.log"; then
      echo "$name $side: $(summary "$out/$name-$side.json")"
    else
      echo "$name $side: failed"; tail -5 "$out/$name-$side.log"
    fi
  done
done
