#!/usr/bin/env bash
# profile_step.sh - one step of sbpc trainers under Nsight Compute, and one
# torch.compile step under torch.profiler, summed by kernel category
# (bench/profile_step.py). On the GPU machine, from the repository root:
#
#   bash bench/profile_step.sh [--no-torch] [--top N] LABEL=TRAINER.so [LABEL=TRAINER.so ...]
#
# --top N also records each kernel's DRAM bytes and prints every trainer's N
# most expensive kernels (launches, ms, achieved GB/s) before the table.
#
# Needs ncu and the carried .devpkg (sbp-bench, libsbprt). Writes
# $OUT/profile.md (or build/profile.md) and prints the table last.
set -uo pipefail
cd "$(dirname "$0")/.."
torch=--torch-compile
top=()
metrics=gpu__time_duration.sum
while [[ ${1:-} == --* ]]; do
  case $1 in
    --no-torch) torch=""; shift ;;
    --top) top=(--top "$2"); metrics+=,dram__bytes.sum; shift 2 ;;
    *) echo "profile_step.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out=${OUT:-build}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/.devpkg/lib:${LD_LIBRARY_PATH:-}"
bench=${SBP_BENCH:-.devpkg/bin/sbp-bench}
args=()
for spec in "$@"; do
  label=${spec%%=*} so=${spec#*=}
  csv="$out/ncu-$label.csv"
  ncu --graph-profiling node --clock-control none --cache-control none \
      --metrics $metrics --csv --print-units base \
      "$bench" "$so" --warmup 1 --steps 1 > "$csv" 2> "$out/ncu-$label.log" \
    || { echo "profile_step.sh: ncu failed for $so (see $out/ncu-$label.log)"; tail -5 "$out/ncu-$label.log"; }
  args+=(--ncu-csv "$label=$csv")
done
python3 bench/profile_step.py "${args[@]}" "${top[@]}" $torch --out "$out/profile.md"
