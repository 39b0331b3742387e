#!/usr/bin/env bash
# make_models.sh - write the benchmark models with sbp-zoo and compile them with sbpc.
# Runs HERE (where sbpc exists), from the repository root:
#
#   bench/make_models.sh --target cuda                 # .devpkg/trainers/patch_mlp_bench_{dense,sbp}.{mlir,so}
#   bench/make_models.sh --target cpu --preset smoke --out build/bench-smoke/devpkg
#
# For each preset it writes <name>_dense.mlir (no SBP) and <name>_sbp.mlir (SBP on the preset's
# blocks), both with the same model name, and compiles each to <name>_<mode>.so with
# `sbpc --target=TARGET`. Options:
#   --target cpu|cuda     sbpc target (default cuda)
#   --preset NAME         bench (default), tiny, smoke, vit_tiny, vit_smoke, or several:
#                         --preset bench --preset vit_tiny
#   --out DIR             package folder; trainers go to DIR/trainers (default .devpkg)
#   --sbpc PATH           sbpc binary (default: $SBPC or build/bin/sbpc)
#   --keep-source         pass --keep-source to sbpc (generated source beside the .so)
#   --sbpc-arg ARG        pass ARG to sbpc (repeatable), e.g. --sbpc-arg --gpu-arch=sm_90
#   --suffix S            append S to the mode in the file names (<name>_<mode>S.so), e.g. -tf32
#                         for trainers built with other sbpc flags; run_benchmarks.sh labels a
#                         trainer whose name contains tf32 or bf16 with that precision
#   --sources-only        write the generated CUDA source (<name>_<mode>S.cu, sbpc --emit=cpp) instead
#                         of the .so; test/gpu/build-trainers.sh builds them on the GPU machine
# Extra sbp-zoo flags for every preset can be given in $ZOO_EXTRA (e.g. ZOO_EXTRA="--batch 128").
set -euo pipefail

target=cuda
out=.devpkg
sbpc=${SBPC:-build/bin/sbpc}
presets=()
suffix=""
sbpc_extra=()
sources_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --target=*) target=${1#*=}; shift ;;
    --preset) presets+=("$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --suffix) suffix=$2; shift 2 ;;
    --sbpc) sbpc=$2; shift 2 ;;
    --keep-source) sbpc_extra+=(--keep-source); shift ;;
    --sbpc-arg) sbpc_extra+=("$2"); shift 2 ;;
    --sources-only) sources_only=1; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "make_models.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ ${#presets[@]} -gt 0 ]] || presets=(bench)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
zoo="$root/frontends/sbp-zoo"
[[ -x $sbpc ]] || { echo "make_models.sh: no sbpc at $sbpc (build it, or pass --sbpc)" >&2; exit 1; }

# name | sbp-zoo model | model flags | SBP flags (only in the _sbp variant)
preset_args() {
  case "$1" in
    vit_tiny)  # timm vit_tiny_patch16_224; SBP as the paper's Table 1: keep 0.5 on the last 8 of 12 blocks
      echo "vit_tiny_patch16_224|vit|--img 224 --channels 3 --patch 16 --dim 192 --depth 12 --heads 3 --classes 1000 --batch 256|--sbp-blocks 4:12 --keep 0.5" ;;
    vit_smoke)  # a small ViT for CPU runs in seconds
      echo "vit_smoke|vit|--img 28 --channels 1 --patch 7 --dim 64 --depth 4 --heads 2 --mlp-ratio 2 --classes 10 --batch 32|--sbp-blocks 2:4 --keep 0.5" ;;
    bench)  # ViT-Small width, no attention: 224 px, 16 px patches (14x14 = 196 tokens)
      echo "patch_mlp_bench|patch-mlp|--img 224 --channels 3 --patch 16 --dim 384 --hidden 1536 --depth 12 --classes 1000 --batch 256|--sbp-blocks 4:12 --keep 0.5" ;;
    tiny)   # ViT-Tiny width (192, MLP 768), no attention; same token grid as bench
      echo "patch_mlp_tiny|patch-mlp|--img 224 --channels 3 --patch 16 --dim 192 --hidden 768 --depth 12 --classes 1000 --batch 256|--sbp-blocks 4:12 --keep 0.5" ;;
    smoke)  # small enough for a CPU run in seconds
      echo "patch_mlp_smoke|patch-mlp|--img 28 --channels 1 --patch 7 --dim 64 --hidden 128 --depth 4 --classes 10 --batch 64|--sbp-blocks 2:4 --keep 0.5" ;;
    *) echo "make_models.sh: unknown preset $1 (bench, tiny, smoke, vit_tiny, vit_smoke)" >&2; exit 2 ;;
  esac
}

mkdir -p "$out/trainers"
for p in "${presets[@]}"; do
  IFS='|' read -r name zoo_model model_flags sbp_flags <<<"$(preset_args "$p")"
  for mode in dense sbp; do
    mlir="$out/trainers/${name}_${mode}.mlir"
    so="$out/trainers/${name}_${mode}${suffix}.so"
    flags="$model_flags ${ZOO_EXTRA:-}"
    [[ $mode == sbp ]] && flags="$flags $sbp_flags"
    # shellcheck disable=SC2086  # flags are word lists
    python3 "$zoo" "$zoo_model" --name "$name" $flags -o "$mlir"
    if [[ $sources_only == 1 ]]; then
      "$sbpc" "$mlir" --target="$target" "${sbpc_extra[@]}" --emit=cpp -o "${so%.so}.cu"
      continue
    fi
    echo "make_models.sh: $sbpc $mlir --target=$target -o $so" >&2
    start=$(date +%s)
    "$sbpc" "$mlir" --target="$target" "${sbpc_extra[@]}" -o "$so"
    echo "make_models.sh:   $(du -h "$so" | cut -f1), $(( $(date +%s) - start )) s" >&2
  done
done
ls -l "$out/trainers" >&2
