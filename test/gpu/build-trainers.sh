#!/usr/bin/env bash
# Builds, on the GPU machine, the trainers whose generated sources travelled
# (test/gpu/make-trainers.sh with SOURCES_ONLY=1, bench/make_models.sh
# --sources-only): every DIR/NAME.cu without a NAME.so, with the nvcc command
# sbpc itself uses (codegen/BuildTrainer.cpp), 16 at a time.
#   bash test/gpu/build-trainers.sh .devpkg/trainers .devpkg/benchpkg/trainers
set -uo pipefail
cd "$(dirname "$0")/../.."
arch=${GPU_ARCH:-90}
# The compiled kernel library trainers link (scripts/make-devpkg.sh copies it).
lib=${KERNELS_LIB:-.devpkg/lib/libsbp_cuda_kernels.a}
[ -f "$lib" ] || { echo "build-trainers.sh: no kernel library at $lib" >&2; exit 1; }
lib=$(realpath "$lib")
build_one() {
  local src=$1 so=${1%.cu}.so
  [ -e "$so" ] && return 0
  nvcc -O3 -std=c++17 -shared -cudart shared -Xcompiler -fPIC -Xcompiler -fvisibility=hidden \
    -gencode "arch=compute_$arch,code=[sm_$arch,compute_$arch]" -I runtime/include -I codegen/cuda/include \
    "$src" "$lib" -lcublasLt -lcudart -o "$so" 2> "${src%.cu}.build.log" || { echo "FAILED: $src"; cat "${src%.cu}.build.log"; return 1; }
}
export -f build_one
export arch lib
start=$(date +%s)
find "$@" -maxdepth 1 -name '*.cu' | xargs -r -P "${JOBS:-16}" -I{} bash -c 'build_one {}'
rc=$?
echo "build-trainers.sh: $(find "$@" -maxdepth 1 -name '*.so' | wc -l) trainers, $(( $(date +%s) - start )) s"
exit $rc
