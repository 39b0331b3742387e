#!/usr/bin/env bash
# Builds (here, where sbpc runs) the trainers run-gpu-tests.sh needs, into
# .devpkg/trainers, plus the CPU trainer's gradients to compare against.
#   VIT_PRECISIONS="fp32 bf16"  precisions of the ViT fixture trainers (default both)
#   VIT_FP32_MODES="full qkv query head"  the fp32 ones (default all)
#   PATCH_MLP=0                 skip the patch-MLP trainers (fixture and Fashion-MNIST)
#   SOURCES_ONLY=1              write the CUDA trainers' generated sources (NAME.cu) instead of
#                               building them: test/gpu/build-trainers.sh builds them on the GPU
#                               machine (16 cores) in a minute
# Two nvcc builds run at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=.devpkg/trainers
mkdir -p $pkg
sbpc=build/bin/sbpc
tmp=$(mktemp -d)
trap 'rm -rf $tmp' EXIT

# cuda NAME ARGS...: sbpc ARGS --target=cuda -o $pkg/NAME.so, two at a time.
cuda() {
  local name=$1; shift
  if [ "${SOURCES_ONLY:-0}" = 1 ]; then
    $sbpc "$@" --target=cuda --emit=cpp -o $pkg/$name.cu
    return
  fi
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  $sbpc "$@" --target=cuda -o $pkg/$name.so &
}
# cpu_grads OUT MODEL KEEPFILE FIXTURES [SBPC ARGS...]: the CPU trainer's gradients of the fixture batch.
cpu_grads() {
  local out=$1 model=$2 keepfile=$3 fix=$4; shift 4
  local keep=(); [ -n "$keepfile" ] && keep=(--keep-indices $keepfile)
  $sbpc $model --target=cpu "$@" -o $tmp/cpu.so
  build/bin/sbp-train $tmp/cpu.so --params $fix/params.safetensors --batch $fix/batch.safetensors \
    "${keep[@]}" --dump-grads $pkg/$out.safetensors > /dev/null
}

if [ "${PATCH_MLP:-1}" != 0 ]; then
  fix=test/numerics/fixtures/patch_mlp_small
  small=test/numerics/Inputs/patch_mlp_small.mlir
  cuda small_full_cuda $small --keep=1.0
  cuda small_sbp_cuda $small
  cuda mnist_full_cuda samples/patch_mlp_mnist.mlir --keep=1.0
  cuda mnist_sbp_cuda samples/patch_mlp_mnist.mlir
  cpu_grads grads_full_cpu $small "" $fix --keep=1.0
  cpu_grads grads_sbp_cpu $small $fix/keep.txt $fix
fi

# ViT: the small fixture model (every attention mode) and the Fashion-MNIST ViT.
vin=test/numerics/Inputs
for prec in ${VIT_PRECISIONS:-fp32 bf16}; do
  modes="full qkv query head"; [ $prec = fp32 ] && modes=${VIT_FP32_MODES:-$modes}
  for mode in $modes; do
    if [ $mode = full ]; then cuda vit_small_full_${prec}_cuda $vin/vit_small_qkv.mlir --keep=1.0 --precision=$prec
    else cuda vit_small_${mode}_${prec}_cuda $vin/vit_small_$mode.mlir --precision=$prec; fi
  done
  cuda vit_fmnist_full_${prec}_cuda samples/vit_fmnist.mlir --keep=1.0 --precision=$prec
  cuda vit_fmnist_sbp_${prec}_cuda samples/vit_fmnist.mlir --precision=$prec
done
# The fp32 trainers are checked on vit_small, the bf16 ones on vit_small_bf16 (milder
# parameters: see test/numerics/README.md); the CPU trainer's gradients of both.
for fixdir in vit_small vit_small_bf16; do
  vfix=test/numerics/fixtures/$fixdir
  cpu_grads ${fixdir}_grads_full_cpu $vin/vit_small_qkv.mlir "" $vfix --keep=1.0
  for mode in qkv query head; do
    keepfile=$vfix/keep.txt; [ $mode = head ] && keepfile=$vfix/keep_head.txt
    cpu_grads ${fixdir}_grads_sbp_${mode}_cpu $vin/vit_small_$mode.mlir $keepfile $vfix
  done
  cpu_grads ${fixdir}_grads_sbp_head_perblock_cpu $vin/vit_small_head.mlir $vfix/keep_head_perblock.txt $vfix
done
wait
