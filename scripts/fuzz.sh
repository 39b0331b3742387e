#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of test/fuzz (clang-19, ASan + UBSan)
# in ./build-fuzz.
#
#   scripts/fuzz.sh build                 configure and build the targets
#   scripts/fuzz.sh run TARGET SECONDS [RUNS]
#                                         fuzz one target for SECONDS (0: no limit) or
#                                         RUNS executions, whichever ends first; new
#                                         crashes are copied to
#                                         test/fuzz/regressions/TARGET/pending/
#   scripts/fuzz.sh replay                run every kept regression input once
#   scripts/fuzz.sh ci [SECONDS]          build, replay, then each target SECONDS (20)
#   scripts/fuzz.sh list                  the target names
#
# Targets: pipeline (sbpc in process), safetensors, idx, cifar, keep-indices.
# Inputs under regressions/TARGET/ must pass (CI replays them); pending/ holds
# crashes not fixed yet (not replayed). Extra libFuzzer flags: FUZZ_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$ROOT/build-fuzz
FUZZ=$ROOT/test/fuzz
TARGETS=(pipeline safetensors idx cifar keep-indices)

die() { echo "fuzz.sh: error: $*" >&2; exit 2; }

build() {
  command -v clang++-19 >/dev/null || die "clang++-19 not found: run scripts/install-deps.sh"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DSBP_FUZZ=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 >/dev/null
  cmake --build "$BUILD" --target sbp-fuzzers
}

binary() { echo "$BUILD/bin/sbp-fuzz-$1"; }

# A fresh directory of seed inputs for TARGET: the committed corpus, the
# regression inputs, and the project's own files of that format.
seeds() {
  local target=$1 dir=$BUILD/seeds/$1
  rm -rf "$dir" && mkdir -p "$dir"
  [ -d "$FUZZ/corpus/$target" ] && cp "$FUZZ/corpus/$target"/* "$dir"/ 2>/dev/null || true
  regression_inputs "$target" | while read -r f; do cp "$f" "$dir/regression-$(basename "$f")"; done
  local n=0
  case $target in
    pipeline)
      for f in "$ROOT"/samples/*.mlir "$ROOT"/test/{Dialect,Transforms,Codegen,Errors,numerics}/{,Inputs/}*.mlir; do
        [ -f "$f" ] && cp "$f" "$dir/$((n++))-$(basename "$f")"
      done ;;
    safetensors)
      for f in "$ROOT"/test/numerics/fixtures/patch_mlp_small/*.safetensors; do
        cp "$f" "$dir/$((n++))-$(basename "$f")"
      done ;;
    keep-indices)
      for f in "$ROOT"/test/numerics/fixtures/*/keep*.txt; do
        cp "$f" "$dir/$((n++))-$(basename "$f")"
      done ;;
  esac
  echo "$dir"
}

regression_inputs() {
  local dir=$FUZZ/regressions/$1
  [ -d "$dir" ] && find "$dir" -maxdepth 1 -type f ! -name '*.md' | sort
  return 0
}

dict_flag() {
  case $1 in
    pipeline) echo "-dict=$FUZZ/dicts/mlir.dict" ;;
    idx|cifar) echo "-dict=$FUZZ/dicts/dataset.dict" ;;
    safetensors) echo "-dict=$FUZZ/dicts/safetensors.dict" ;;
  esac
}

# Fuzzes TARGET for SECONDS (or RUNS executions) on a work corpus kept in
# build-fuzz/corpus/TARGET.
run() {
  local target=$1 seconds=$2 runs=${3:-} bin
  bin=$(binary "$target")
  [ -x "$bin" ] || die "no fuzz target '$target' (built? one of: ${TARGETS[*]})"
  local work=$BUILD/corpus/$target artifacts=$BUILD/artifacts/$target/
  mkdir -p "$work" "$artifacts"
  local seed_dir; seed_dir=$(seeds "$target")
  local status
  # -timeout: an input running over 10 s is a hang; -rss_limit_mb: a blow-up.
  set +e
  "$bin" -max_total_time="$seconds" ${runs:+-runs="$runs"} -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts" $(dict_flag "$target") ${FUZZ_FLAGS:-} \
    "$work" "$seed_dir" 2>&1 | tee "$BUILD/$target.log" |
    grep -E "^(#[0-9]+.*DONE|stat::|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)"
  status=${PIPESTATUS[0]}
  set -e
  keep_crashes "$target"
  return "$status"
}

# Copies new crash, timeout and out-of-memory inputs into pending/ (once each).
keep_crashes() {
  local target=$1 pending=$FUZZ/regressions/$1/pending f
  for f in "$BUILD/artifacts/$target"/{crash,timeout,oom,leak}-*; do
    [ -f "$f" ] || continue
    mkdir -p "$pending"
    [ -e "$pending/$(basename "$f")" ] || { cp "$f" "$pending/"; echo "fuzz.sh: kept $pending/$(basename "$f")"; }
  done
}

# Runs each kept regression input once; fails on any crash.
replay() {
  local target files
  for target in "${TARGETS[@]}"; do
    mapfile -t files < <(regression_inputs "$target")
    [ ${#files[@]} -gt 0 ] || continue
    echo "replaying ${#files[@]} regression input(s) of $target"
    "$(binary "$target")" -timeout=10 -rss_limit_mb=4096 "${files[@]}" >"$BUILD/replay-$target.log" 2>&1 ||
      { tail -40 "$BUILD/replay-$target.log"; die "a regression input of $target fails"; }
  done
}

ci() {
  local seconds=${1:-20} target failed=()
  build
  replay
  for target in "${TARGETS[@]}"; do
    echo "fuzzing $target for ${seconds}s"
    run "$target" "$seconds" || failed+=("$target")
  done
  [ ${#failed[@]} -eq 0 ] || die "fuzz targets found crashes: ${failed[*]} (inputs under build-fuzz/artifacts/)"
  echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
}

case ${1:-} in
  build) build ;;
  run) [ $# -eq 3 ] || [ $# -eq 4 ] || die "usage: fuzz.sh run TARGET SECONDS [RUNS]"; run "$2" "$3" "${4:-}" ;;
  replay) replay ;;
  ci) ci "${2:-20}" ;;
  list) printf '%s\n' "${TARGETS[@]}" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
