#!/usr/bin/env bash
# run_benchmarks.sh - every benchmark in one go: sbpc trainers (sbp-bench) and the PyTorch
# baselines of the same models (torch_patch_mlp.py), then a markdown table.
#
# On the GPU machine, from the repository root, with .devpkg/ carried (see bench/README.md):
#   bash bench/run_benchmarks.sh                       # results in $OUT (or build/bench-results)
# Here, end to end on the CPU with a small model (sbpc, sbp-bench built on demand, torch optional):
#   bash bench/run_benchmarks.sh --cpu-smoke
#
# Options:
#   --steps N            timed steps per run (default 50; smoke 10)
#   --warmup W           warm-up steps per run (default 10; smoke 3)
#   --precisions "..."   PyTorch precisions: fp32, tf32, bf16 (default "fp32 bf16")
#   --torch-modes "..."  PyTorch modes of patch-MLP models (default "eager compile sbp sbp_gather";
#                        sbp_compile too)
#   --vit-modes "..."    PyTorch modes of ViT models, torch_vit.py (default "eager compile checkpoint sbp")
#   --devpkg DIR         package folder (default .devpkg; smoke build/bench-smoke/devpkg)
#   --device N           CUDA device ordinal (default 0)
#   --skip-torch         only the sbpc trainers
#   --skip-sbpc          only the PyTorch baselines
# Environment: OUT (results folder), PYTHON (default python3), SBP_BENCH (sbp-bench binary),
# TORCH_TIMEOUT (seconds per PyTorch run, default 300), SBPC (for --cpu-smoke).
#
# Writes $OUT/bench.jsonl (one JSON line per run, failed runs as {"error": ...} lines),
# $OUT/table.md, $OUT/gpu.txt and $OUT/logs/*.log; prints one summary line per run and the
# table last.
set -uo pipefail

cpu_smoke=0
steps="" warmup="" precisions="" torch_modes="eager compile sbp sbp_gather"
vit_modes="eager compile checkpoint sbp"
devpkg="" device=0 skip_torch=0 skip_sbpc=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-smoke) cpu_smoke=1; shift ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --torch-modes) torch_modes=$2; shift 2 ;;
    --vit-modes) vit_modes=$2; shift 2 ;;
    --devpkg) devpkg=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --skip-torch) skip_torch=1; shift ;;
    --skip-sbpc) skip_sbpc=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "run_benchmarks.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
python=${PYTHON:-python3}
res=${OUT:-$root/build/bench-results}
mkdir -p "$res/logs"
jsonl="$res/bench.jsonl"
: >"$jsonl"
say() { echo "== $*"; }

if [[ $cpu_smoke == 1 ]]; then
  target=cpu torch_device=cpu
  : "${steps:=10}" "${warmup:=3}" "${precisions:=fp32 bf16}" "${devpkg:=build/bench-smoke/devpkg}"
  say "cpu smoke test: $(nproc) cores, $(uname -m)"
  rm -rf "$devpkg/trainers"
  bench/make_models.sh --target cpu --preset smoke --out "$devpkg" 2>"$res/logs/make_models.log" \
    || { cat "$res/logs/make_models.log"; echo "run_benchmarks.sh: make_models.sh failed" >&2; exit 1; }
  sbp_bench=${SBP_BENCH:-}
  for c in "$devpkg/bin/sbp-bench" build/bin/sbp-bench build/bench-standalone/bin/sbp-bench; do
    [[ -z $sbp_bench && -x $c ]] && sbp_bench=$c
  done
  if [[ -z $sbp_bench ]]; then
    say "building sbp-bench standalone in build/bench-standalone"
    { cmake -S bench -B build/bench-standalone -G Ninja && ninja -C build/bench-standalone sbp-bench; } \
      >"$res/logs/build.log" 2>&1 || { tail -30 "$res/logs/build.log"; exit 1; }
    sbp_bench=build/bench-standalone/bin/sbp-bench
  fi
  lib_path=${LD_LIBRARY_PATH:-}
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" | tee "$res/gpu.txt"
else
  target=cuda torch_device=cuda:$device
  : "${steps:=50}" "${warmup:=10}" "${precisions:=fp32 bf16}" "${devpkg:=.devpkg}"
  sbp_bench=${SBP_BENCH:-$devpkg/bin/sbp-bench}
  # Only the sbp-bench runs see the carried libraries; PyTorch keeps its own.
  pkg_lib="$devpkg/lib"
  [[ $devpkg == /* ]] || pkg_lib="$root/$devpkg/lib"
  cuda_lib=/usr/local/cuda/lib64
  if command -v nvcc >/dev/null; then cuda_lib="$cuda_lib:$(dirname "$(command -v nvcc)")/../lib64"; fi
  lib_path="$pkg_lib:$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "GPU"
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    nvidia-smi --query-gpu=memory.used,utilization.gpu,temperature.gpu,clocks.sm,clocks.max.sm,power.limit --format=csv
  } 2>&1 | tee "$res/gpu.txt"
fi
[[ -d $devpkg/trainers ]] || { echo "run_benchmarks.sh: no $devpkg/trainers" >&2; exit 1; }

# error_line FRAMEWORK MODEL MODE PRECISION MESSAGE: a JSON line for a failed run.
error_line() {
  "$python" -c 'import json,sys; f,m,mo,p,e=sys.argv[1:]; print(json.dumps({"framework":f,"model":m,"mode":mo,"precision":p,"error":e}))' "$@" \
    >>"$jsonl" 2>/dev/null || echo "{\"framework\": \"$1\", \"model\": \"$2\", \"mode\": \"$3\", \"precision\": \"$4\", \"error\": \"failed\"}" >>"$jsonl"
}

# run_one FRAMEWORK MODEL MODE PRECISION LOG -- COMMAND...: appends the command's JSON line.
run_one() {
  local fw=$1 model=$2 mode=$3 prec=$4 log=$5
  shift 6
  local tmp rc t0
  tmp=$(mktemp)
  t0=$SECONDS
  "$@" >"$tmp" 2>"$log"
  rc=$?
  if [[ $rc == 0 ]] && grep -q '^{' "$tmp"; then
    grep '^{' "$tmp" >>"$jsonl"
    local line
    line=$(grep -E '^(sbp-bench|torch_patch_mlp.py|torch_vit.py): ' "$log" | tail -1)
    [[ -n $line ]] && echo "$line [$((SECONDS - t0)) s]"
  elif [[ $rc == 3 && $fw == sbpc ]]; then
    echo "skipped $(basename "$log" .log): $(tail -1 "$log")"
  else
    local msg
    msg="exit $rc: $(grep -v '^\s*$' "$log" | tail -1 | cut -c1-300)"
    echo "FAILED $fw $model $mode $prec: $msg"
    error_line "$fw" "$model" "$mode" "$prec" "$msg"
  fi
  rm -f "$tmp"
}

shopt -s nullglob
trainers=("$devpkg"/trainers/*.so)
models=()
for so in "${trainers[@]}"; do
  stem=$(basename "$so" .so)
  m=${stem%_*}
  [[ " ${models[*]} " == *" $m "* ]] || models+=("$m")
done
for mlir in "$devpkg"/trainers/*.mlir; do
  m=$(basename "$mlir" .mlir); m=${m%_*}
  [[ " ${models[*]} " == *" $m "* ]] || models+=("$m")
done

if [[ $skip_sbpc == 0 ]]; then
  [[ -x $sbp_bench ]] || { echo "run_benchmarks.sh: no sbp-bench at $sbp_bench" >&2; exit 1; }
  say "sbpc trainers ($target): ${#trainers[@]} in $devpkg/trainers; $steps steps after $warmup warm-up"
  for so in "${trainers[@]}"; do
    stem=$(basename "$so" .so)
    prec=fp32
    [[ $stem == *tf32* ]] && prec=tf32
    [[ $stem == *bf16* ]] && prec=bf16
    run_one sbpc "${stem%_*}" "${stem##*_}" "$prec" "$res/logs/sbpc_$stem.log" -- \
      env LD_LIBRARY_PATH="$lib_path" "$sbp_bench" "$so" --steps "$steps" --warmup "$warmup" \
      --device "$device" --require-target "$target" --precision "$prec"
  done
fi

if [[ $skip_torch == 0 ]]; then
  if ! "$python" -c 'import torch' 2>/dev/null; then
    say "PyTorch: not installed for $python, skipped"
  else
    say "PyTorch $("$python" -c 'import torch; print(torch.__version__)') on $torch_device: modes [$torch_modes], precisions [$precisions]"
    for m in "${models[@]}"; do
      mlir=""
      for c in "$devpkg/trainers/${m}_sbp.mlir" "$devpkg"/trainers/"${m}"_*.mlir; do
        [[ -z $mlir && -f $c ]] && mlir=$c
      done
      [[ -n $mlir ]] || { echo "no .mlir for $m: PyTorch skipped"; continue; }
      if grep -q 'sbp.vit_block' "$mlir"; then
        # A ViT: timm's VisionTransformer in PyTorch, at the trainer's batch and image size.
        shape=$(sed -n 's/.*sbp.input "images" : tensor<\([0-9]*\)x\([0-9]*\)x\([0-9]*\)x.*/--batch \1 --img \3/p' "$mlir")
        # shellcheck disable=SC2086  # shape is a word list
        run_one check "$m" check fp32 "$res/logs/torch_${m}_check.log" -- \
          timeout "${TORCH_TIMEOUT:-300}" "$python" bench/torch_vit.py --selfcheck --name "$m" $shape \
          --device "$torch_device"
        for prec in $precisions; do
          for mode in $vit_modes; do
            # shellcheck disable=SC2086
            run_one pytorch "$m" "$mode" "$prec" "$res/logs/torch_${m}_${mode}_${prec}.log" -- \
              timeout "${TORCH_TIMEOUT:-300}" "$python" bench/torch_vit.py --name "$m" $shape \
              --mode "$mode" --precision "$prec" --steps "$steps" --warmup "$warmup" --device "$torch_device"
          done
        done
        continue
      fi
      has_sbp=0
      grep -q 'sbp.mask_group' "$mlir" && has_sbp=1
      if [[ $has_sbp == 1 ]]; then
        run_one check "$m" check fp32 "$res/logs/torch_${m}_check.log" -- \
          timeout "${TORCH_TIMEOUT:-300}" "$python" bench/torch_patch_mlp.py --mlir "$mlir" --check \
          --device "$torch_device"
        tail -1 "$jsonl" | grep -q '"ok": true' && echo "SBP gradient check ($m): ok"
      fi
      for prec in $precisions; do
        for mode in $torch_modes; do
          if [[ $mode == sbp* && $has_sbp == 0 ]]; then continue; fi
          run_one pytorch "$m" "$mode" "$prec" "$res/logs/torch_${m}_${mode}_${prec}.log" -- \
            timeout "${TORCH_TIMEOUT:-300}" "$python" bench/torch_patch_mlp.py --mlir "$mlir" \
            --mode "$mode" --precision "$prec" --steps "$steps" --warmup "$warmup" \
            --device "$torch_device"
        done
      done
    done
  fi
fi

say "results: $jsonl (all runs: $SECONDS s)"
"$python" bench/make_table.py "$jsonl" | tee "$res/table.md"
