#!/usr/bin/env bash
# The main job: install, build, compile the sample patch-MLP with SBP into a
# trainer library and train it on Fashion-MNIST (CPU target).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/bin/sbpc samples/patch_mlp_mnist.mlir --emit=report
build/bin/sbpc samples/patch_mlp_mnist.mlir --target=cpu -o build/patch_mlp_mnist.so
build/bin/sbp-train build/patch_mlp_mnist.so --data /usr/share/datasets/fashion-mnist \
  --epochs "${EPOCHS:-5}" --seed 1 --log build/patch_mlp_mnist.csv --save build/patch_mlp_mnist.ckpt.safetensors
