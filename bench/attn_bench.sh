#!/usr/bin/env bash
# attn_bench.sh - sbp::cuda's bf16 attention (forward, drop_qkv forward, backward, compact
# backward; tiled and resident kernels) vs PyTorch SDPA (cuDNN, FlashAttention-2,
# memory-efficient) on ViT-Tiny shapes, in one go.
#
# On the GPU machine, from the repository root (needs nvcc; PyTorch for the baseline):
#   bash bench/attn_bench.sh [batch] [iters]          # defaults 256 50
# Compiles bench/attn_bench.cu with the kernel sources (codegen/cuda/src/attention_bf16.cu)
# straight into build/attn-bench/attn_bench (no CMake build needed), runs it, then
# bench/attn_bench_torch.py. Environment: NVCC (default nvcc, else /usr/local/cuda/bin/nvcc),
# PYTHON (default python3), CUDA_ARCH (default sm_90), OUT (also writes attn_bench.md there).
# `build/attn-bench/attn_bench 256 1`: one warm-up and one timed call of each, on each kernel
# family (what Nsight Compute profiles).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
batch=${1:-256}
iters=${2:-50}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
python=${PYTHON:-python3}
arch=${CUDA_ARCH:-sm_90}
bin=build/attn-bench/attn_bench
mkdir -p build/attn-bench
echo "== building $bin ($nvcc -arch=$arch)"
"$nvcc" -std=c++17 -O3 -arch="$arch" -Icodegen/cuda/include -Iruntime/include -Icodegen/cuda/src \
  bench/attn_bench.cu codegen/cuda/src/attention_bf16.cu -o "$bin"
report=$(mktemp)
{
  echo "== sbpc (sbp::cuda)"
  "$bin" "$batch" "$iters"
  echo
  echo "== PyTorch (scaled_dot_product_attention)"
  if "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    "$python" bench/attn_bench_torch.py --batch "$batch" --iters "$iters"
  else
    echo "(skipped: no PyTorch with CUDA for $python)"
  fi
} | tee "$report"
if [[ -n "${OUT:-}" ]]; then
  cp "$report" "$OUT/attn_bench.md"
fi
rm -f "$report"
