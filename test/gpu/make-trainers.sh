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
