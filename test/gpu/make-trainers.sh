#!/usr/bin/env bash
# Builds (here, where sbpc runs) the trainers run-gpu-tests.sh needs, into
# .devpkg/trainers, plus the CPU trainer's gradients to compare against.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=.devpkg/trainers
mkdir -p $pkg
sbpc=build/bin/sbpc
fix=test/numerics/fixtures/patch_mlp_small
small=test/numerics/Inputs/patch_mlp_small.mlir
$sbpc $small --target=cuda --keep=1.0 -o $pkg/small_full_cuda.so
$sbpc $small --target=cuda -o $pkg/small_sbp_cuda.so
$sbpc samples/patch_mlp_mnist.mlir --target=cuda --keep=1.0 -o $pkg/mnist_full_cuda.so
$sbpc samples/patch_mlp_mnist.mlir --target=cuda -o $pkg/mnist_sbp_cuda.so
# The CPU trainer's gradients of the fixture batch, the second reference.
tmp=$(mktemp -d)
$sbpc $small --target=cpu --keep=1.0 -o $tmp/full.so
$sbpc $small --target=cpu -o $tmp/sbp.so
build/bin/sbp-train $tmp/full.so --params $fix/params.safetensors --batch $fix/batch.safetensors \
  --dump-grads $pkg/grads_full_cpu.safetensors
build/bin/sbp-train $tmp/sbp.so --params $fix/params.safetensors --batch $fix/batch.safetensors \
  --keep-indices $fix/keep.txt --dump-grads $pkg/grads_sbp_cpu.safetensors
rm -rf $tmp

# ViT: the small fixture model (every attention mode, fp32 and bf16) and the
# Fashion-MNIST ViT; the CPU trainer's gradients of the fixture batch beside them.
vfix=test/numerics/fixtures/vit_small
tmp=$(mktemp -d)
for mode in qkv query head; do
  in=test/numerics/Inputs/vit_small_$mode.mlir
  keepfile=$vfix/keep.txt; [ $mode = head ] && keepfile=$vfix/keep_head.txt
  for prec in ${VIT_PRECISIONS:-fp32 bf16}; do
    $sbpc $in --target=cuda --precision=$prec -o $pkg/vit_small_${mode}_${prec}_cuda.so
  done
  $sbpc $in --target=cpu -o $tmp/vit_$mode.so
  build/bin/sbp-train $tmp/vit_$mode.so --params $vfix/params.safetensors --batch $vfix/batch.safetensors \
    --keep-indices $keepfile --dump-grads $pkg/vit_grads_sbp_${mode}_cpu.safetensors
done
for prec in ${VIT_PRECISIONS:-fp32 bf16}; do
  $sbpc test/numerics/Inputs/vit_small_qkv.mlir --target=cuda --keep=1.0 --precision=$prec \
    -o $pkg/vit_small_full_${prec}_cuda.so
  for mode in full sbp; do
    keep=(); [ $mode = full ] && keep=(--keep=1.0)
    $sbpc samples/vit_fmnist.mlir --target=cuda --precision=$prec "${keep[@]}" -o $pkg/vit_fmnist_${mode}_${prec}_cuda.so
  done
done
$sbpc test/numerics/Inputs/vit_small_qkv.mlir --target=cpu --keep=1.0 -o $tmp/vit_full.so
build/bin/sbp-train $tmp/vit_full.so --params $vfix/params.safetensors --batch $vfix/batch.safetensors \
  --dump-grads $pkg/vit_grads_full_cpu.safetensors
rm -rf $tmp
