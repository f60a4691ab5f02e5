#!/usr/bin/env bash
# Builds the parsers' libFuzzer targets with clang, ASan and UBSan (STRATA_FUZZ=ON, in
# $FUZZ_BUILD_DIR) and runs each for $FUZZ_SECONDS (default 60), one after another, on a working
# corpus seeded from tests/fuzz/corpus/<target> with the format's dictionary.
#   scripts/fuzz.sh [TARGET...]      all targets when none is named (tests/fuzz/fuzz_targets.h)
# Crashes are written to $FUZZ_WORK/crashes/<target>/ and the script exits non-zero; copy a
# reproducer to tests/fuzz/regressions/<target>/ with its fix so the replay test keeps it fixed.
# FUZZ_MERGE=1 merges the inputs that found new coverage back into tests/fuzz/corpus (small).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_WORK=${FUZZ_WORK:-$FUZZ_BUILD_DIR/fuzz-work}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
# Seconds one input may take before it counts as a hang (raise it on a loaded machine).
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-20}
ALL="request_line safetensors_file safetensors_index model_config tokenizer_json tokenize_text store_manifest chat_template constraint"
TARGETS=${*:-$ALL}

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found (Debian: apt-get install clang)" >&2
  exit 2
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$FUZZ_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DSTRATA_FUZZ=ON -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCH=OFF \
  -DSTRATA_CUDA=OFF "${launcher[@]}" >/dev/null
cmake --build "$FUZZ_BUILD_DIR" -j "$FUZZ_JOBS" --target strata_fuzzers

export STRATA_TEST_DATA=$PWD/tests/data
status=0
printf '| target | seconds | runs | corpus | crashes |\n|---|---|---|---|---|\n' > "$FUZZ_BUILD_DIR/fuzz-summary.md"
for t in $TARGETS; do
  bin=$FUZZ_BUILD_DIR/tests/fuzz/strata_fuzz_$t
  mkdir -p "$FUZZ_WORK/corpus/$t" "$FUZZ_WORK/crashes/$t"
  max_len=65536
  [ "$t" = request_line ] && max_len=16384
  log=$FUZZ_WORK/$t.log
  echo "fuzz: $t for ${FUZZ_SECONDS}s (log: $log)"
  set +e
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb=2560 -max_len=$max_len \
    -dict="tests/fuzz/dict/$t.dict" -artifact_prefix="$FUZZ_WORK/crashes/$t/" -print_final_stats=1 \
    "$FUZZ_WORK/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "$FUZZ_WORK/crashes/$t" -type f | wc -l)
  corpus=$(find "$FUZZ_WORK/corpus/$t" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s |\n' "$t" "$FUZZ_SECONDS" "$runs" "$corpus" "$crashes" >> "$FUZZ_BUILD_DIR/fuzz-summary.md"
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
    echo "fuzz: $t found a problem (exit $rc); reproducers in $FUZZ_WORK/crashes/$t/" >&2
    tail -30 "$log" >&2
    status=1
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$bin" -merge=1 -max_len=$max_len "tests/fuzz/corpus/$t" "$FUZZ_WORK/corpus/$t" >>"$log" 2>&1 || true
  fi
done
cat "$FUZZ_BUILD_DIR/fuzz-summary.md"
exit $status
