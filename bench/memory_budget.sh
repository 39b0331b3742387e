#!/usr/bin/env bash
# memory_budget.sh - sbpc --memory-budget on ViT-Tiny (bf16, batch 256), checked against measured
# peaks. Two halves, because sbpc runs here and the GPU is elsewhere:
#
#   bench/memory_budget.sh make [--out DIR]         # HERE: sources of three budgeted trainers
#   bench/memory_budget.sh measure [--out DIR]      # GPU machine: build them, sbp-bench, compare
#
# make: reads the dense plan and the most-SBP plan of samples/vit_tiny.mlir (its annotations
#   replaced by the search) from `sbpc --memory-budget ... --emit=report --target cuda
#   --precision bf16`, picks three budgets at 1/4, 1/2 and 3/4 of the way from the most-SBP peak to
#   the dense one, and for each writes DIR/vit_tiny_budget{1,2,3}.cu (`--emit=cpp`, sources only,
#   as bench/make_models.sh --sources-only), its report (.report.txt) and a line of
#   DIR/budgets.tsv: name, budget bytes, planned peak bytes, the choice.
# measure: builds every DIR/*.cu with test/gpu/build-trainers.sh (needs .devpkg/lib/
#   libsbp_cuda_kernels.a, scripts/make-devpkg.sh), runs sbp-bench (.devpkg/bin/sbp-bench, or
#   $SBP_BENCH) on each trainer, and prints budget, planned and measured peak (peak_mem_bytes:
#   cudaMemGetInfo above the level before creation, the bench's input batch included, which the
#   search counts too); exit status 1 when a measured peak is over its budget.
#
# The DIR default is .devpkg/budget (carried with .devpkg). Environment: SBPC (default
# build/bin/sbpc), STEPS (sbp-bench timed steps, default 10), WARMUP (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
[[ $mode == make || $mode == measure ]] || { sed -n '2,22p' "$0"; exit 2; }
shift
out=.devpkg/budget
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    *) echo "memory_budget.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
model=samples/vit_tiny.mlir
flags=(--target=cuda --precision=bf16)

if [[ $mode == make ]]; then
  sbpc=${SBPC:-build/bin/sbpc}
  [[ -x $sbpc ]] || { echo "memory_budget.sh: no sbpc at $sbpc" >&2; exit 1; }
  mkdir -p "$out"
  # The dense plan: any budget above it chooses dense. The most-SBP plan: the
  # error for a budget nothing fits names the smallest peak.
  dense=$("$sbpc" "$model" "${flags[@]}" --memory-budget 1TiB --emit=report |
    sed -n 's/^  planned peak \([0-9]*\) B = .*/\1/p')
  smallest=$("$sbpc" "$model" "${flags[@]}" --memory-budget 1MiB --emit=report 2>&1 >/dev/null |
    sed -n 's/.*the smallest planned peak is [^(]*(\([0-9]*\) B).*/\1/p' || true)
  [[ -n $dense && -n $smallest ]] || { echo "memory_budget.sh: could not read the plans" >&2; exit 1; }
  echo "dense plan $dense B, most-SBP plan $smallest B"
  printf 'name\tbudget_bytes\tplanned_peak_bytes\tchoice\n' > "$out/budgets.tsv"
  for i in 1 2 3; do
    budget=$(( smallest + (dense - smallest) * i / 4 ))
    name=vit_tiny_budget$i
    "$sbpc" "$model" "${flags[@]}" --memory-budget "$budget" --emit=report > "$out/$name.report.txt"
    "$sbpc" "$model" "${flags[@]}" --memory-budget "$budget" --emit=cpp -o "$out/$name.cu" 2> "$out/$name.choice.txt"
    planned=$(sed -n 's/^  planned peak \([0-9]*\) B = .*/\1/p' "$out/$name.report.txt")
    choice=$(sed 's/^sbpc: //' "$out/$name.choice.txt")
    printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$planned" "$choice" >> "$out/budgets.tsv"
    echo "$name: $choice"
  done
  echo "sources in $out; on the GPU machine: bash bench/memory_budget.sh measure --out $out"
  exit 0
fi

# measure (GPU machine)
bench=${SBP_BENCH:-.devpkg/bin/sbp-bench}
[[ -x $bench ]] || { echo "memory_budget.sh: no sbp-bench at $bench" >&2; exit 1; }
export LD_LIBRARY_PATH=$PWD/.devpkg/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bash test/gpu/build-trainers.sh "$out"
status=0
printf '%-18s %14s %14s %14s %7s  %s\n' trainer budget planned measured "m/b" choice
while IFS=$'\t' read -r name budget planned choice; do
  [[ $name == name ]] && continue
  json=$("$bench" "$out/$name.so" --steps "${STEPS:-10}" --warmup "${WARMUP:-3}" --require-target cuda \
    2> "$out/$name.bench.log") || { echo "$name: sbp-bench failed (see $out/$name.bench.log)"; status=1; continue; }
  echo "$json" > "$out/$name.bench.json"
  measured=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["peak_mem_bytes"])' "$json")
  verdict=$(python3 -c "print(f'{$measured / $budget:.3f}')")
  printf '%-18s %14s %14s %14s %7s  %s\n' "$name" "$budget" "$planned" "$measured" "$verdict" "$choice"
  (( measured <= budget )) || { echo "  OVER BUDGET: $name"; status=1; }
done < "$out/budgets.tsv"
exit $status
