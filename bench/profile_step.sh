#!/usr/bin/env bash
# profile_step.sh - one step of sbpc trainers under Nsight Compute, and one
# torch.compile step under torch.profiler, summed by kernel category
# (bench/profile_step.py). On the GPU machine, from the repository root:
#
#   bash bench/profile_step.sh [--no-torch] LABEL=TRAINER.so [LABEL=TRAINER.so ...]
#
# Needs ncu and the carried .devpkg (sbp-bench, libsbprt). Writes
# $OUT/profile.md (or build/profile.md) and prints the table last.
set -uo pipefail
cd "$(dirname "$0")/.."
torch=--torch-compile
[[ ${1:-} == --no-torch ]] && { torch=""; shift; }
out=${OUT:-build}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.devpkg/lib:${LD_LIBRARY_PATH:-}"
bench=${SBP_BENCH:-.devpkg/bin/sbp-bench}
args=()
for spec in "$@"; do
  label=${spec%%=*} so=${spec#*=}
  csv="$out/ncu-$label.csv"
  ncu --graph-profiling node --clock-control none --cache-control none \
      --metrics gpu__time_duration.sum --csv --print-units base \
      "$bench" "$so" --warmup 1 --steps 1 > "$csv" 2> "$out/ncu-$label.log" \
    || { echo "profile_step.sh: ncu failed for $so (see $out/ncu-$label.log)"; tail -5 "$out/ncu-$label.log"; }
  args+=(--ncu-csv "$label=$csv")
done
python3 bench/profile_step.py "${args[@]}" $torch --out "$out/profile.md"
