#!/usr/bin/env bash
# The main job: install, build, compile the sample patch-MLP with SBP into a
# trainer library and train it on Fashion-MNIST: on the GPU when there is one
# (CUDA target), on the CPU otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
target=cpu
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  target=cuda
fi
echo "target: $target"
build/bin/sbpc samples/patch_mlp_mnist.mlir --emit=report
build/bin/sbpc samples/patch_mlp_mnist.mlir --target=$target -o build/patch_mlp_mnist.so
build/bin/sbp-train build/patch_mlp_mnist.so --data /usr/share/datasets/fashion-mnist \
  --epochs "${EPOCHS:-5}" --seed 1 --log build/patch_mlp_mnist.csv --save build/patch_mlp_mnist.ckpt.safetensors
