#!/usr/bin/env bash
# conv_bench.sh - sbp::cuda's depth-wise 7x7 conv (forward, input and weight gradients) vs
# PyTorch/cuDNN on the four ConvNeXt-T stage shapes, batch 128, bf16, channels-last, in one go.
#
# On the GPU machine, from the repository root (needs nvcc; PyTorch for the baseline):
#   bash bench/conv_bench.sh [batch] [iters] [tiles]   # defaults 128 50; `tiles`: also time
#                                                      # each tile shape and weight-gradient block count
# Compiles bench/conv_bench.cu with the kernel sources (codegen/cuda/src/conv_*.cu) straight
# into build/conv-bench/conv_bench (no CMake build needed), runs it, then
# bench/conv_bench_torch.py. Environment: NVCC (default nvcc, else /usr/local/cuda/bin/nvcc),
# PYTHON (default python3), CUDA_ARCH (default sm_90), OUT (also writes conv_bench.md there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
batch=${1:-128}
iters=${2:-50}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
python=${PYTHON:-python3}
arch=${CUDA_ARCH:-sm_90}
bin=build/conv-bench/conv_bench
mkdir -p build/conv-bench
echo "== building $bin ($nvcc -arch=$arch)"
"$nvcc" -std=c++17 -O3 -arch="$arch" -Icodegen/cuda/include -Iruntime/include -Icodegen/cuda/src \
  bench/conv_bench.cu codegen/cuda/src/conv_bf16.cu codegen/cuda/src/conv_f32.cu -o "$bin"
report=$(mktemp)
{
  echo "== sbpc (sbp::cuda)"
  "$bin" "$batch" "$iters" ${3:-}
  echo
  echo "== PyTorch (cuDNN)"
  if "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    "$python" bench/conv_bench_torch.py --batch "$batch" --iters "$iters"
  else
    echo "(skipped: no PyTorch with CUDA for $python)"
  fi
} | tee "$report"
if [[ -n "${OUT:-}" ]]; then
  cp "$report" "$OUT/conv_bench.md"
fi
rm -f "$report"
