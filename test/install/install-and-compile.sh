#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds a trainer with
# the installed sbpc: it must find the runtime and kernel headers and the
# kernel libraries under the prefix (<prefix>/include, <prefix>/lib), not in
# the source checkout or the build tree. Also checks that the prefix moves.
#   install-and-compile.sh <build dir> <source dir>
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
mv "$tmp/prefix" "$tmp/moved" # relocatable: nothing may point at the install-time prefix
sbpc=$tmp/moved/bin/sbpc
model=$src/samples/patch_mlp_mnist.mlir

# CPU trainer: compiled and linked against the installed headers and archive.
"$sbpc" "$model" --target=cpu -v -o "$tmp/cpu.so" 2> "$tmp/cpu.cmd"
cmd=$(cat "$tmp/cpu.cmd")
[[ -s $tmp/cpu.so ]] || { echo "no CPU trainer"; exit 1; }
[[ $cmd == *"-I $tmp/moved/include"* && $cmd == *"$tmp/moved/lib/libsbp_cpu_kernels.a"* ]] ||
  { echo "the CPU build does not use the installed files: $cmd"; exit 1; }
[[ $cmd != *"$src"* && $cmd != *"$build"* ]] ||
  { echo "the CPU build reads the source or build tree: $cmd"; exit 1; }

# CUDA trainer: the emitted source always; a build where nvcc and the
# installed kernel library are there.
"$sbpc" "$model" --target=cuda --emit=cpp -o "$tmp/cuda.cu"
grep -q '#include <sbp/cuda_kernels.h>' "$tmp/cuda.cu"
if [[ -e $tmp/moved/lib/libsbp_cuda_kernels.a ]] && { command -v nvcc || [[ -x /usr/local/cuda/bin/nvcc ]]; } > /dev/null; then
  "$sbpc" "$model" --target=cuda -v -o "$tmp/cuda.so" 2> "$tmp/cuda.cmd"
  cmd=$(cat "$tmp/cuda.cmd")
  [[ -s $tmp/cuda.so ]] || { echo "no CUDA trainer"; exit 1; }
  [[ $cmd == *"$tmp/moved/lib/libsbp_cuda_kernels.a"* && $cmd != *"$src"* && $cmd != *"$build"* ]] ||
    { echo "the CUDA build does not use the installed files: $cmd"; exit 1; }
fi
echo "install-and-compile: ok"
