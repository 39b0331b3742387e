#!/usr/bin/env bash
# Packs what the GPU machine (device tool) needs into .devpkg/: it has CUDA,
# PyTorch and cmake but no MLIR, so sbpc runs here and its outputs travel.
#   bin/      sbp-train, sbp-bench, the GPU test binaries
#   lib/      libsbprt.so and the Debian shared libraries they need (fmt, Boost)
#   trainers/ CUDA (and a few CPU) trainers compiled here, with their .mlir
#   data/     Fashion-MNIST (from the Debian package)
# .devpkg is ignored by git (.git/info/exclude) and named in the device call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.devpkg
rm -rf "$out" && mkdir -p "$out"/{bin,lib,trainers,data}
cp build/bin/sbp-train "$out/bin/"
for b in sbp-bench sbp-cuda-kernels-tests sbprt-cuda-unit-tests sbprt-cuda-api-tests; do
  [ -e "build/bin/$b" ] && cp "build/bin/$b" "$out/bin/"
done
# The CUDA kernel tests look for their smoke trainer beside the test binary.
cp build/test/cuda_kernels/*.so "$out/bin/" 2>/dev/null || true
# The runtime tests find their hand-written trainers at the build tree's path,
# recorded here so the GPU machine can link it back in place.
cp -r build/test/runtime/trainers "$out/fake-trainers"
echo "$PWD/build" > "$out/BUILD_ROOT"
cp build/lib/libsbprt.so "$out/lib/"
# The compiled CUDA kernel library, for trainers built on the GPU machine
# (test/gpu/build-trainers.sh).
[ -f build/lib/libsbp_cuda_kernels.a ] && cp build/lib/libsbp_cuda_kernels.a "$out/lib/"
# Debian libraries the GPU machine's image may lack.
for b in "$out"/bin/*; do ldd "$b"; done | awk '/=> \// {print $3}' | sort -u |
  grep -E 'libfmt|libboost_program_options' | xargs -r -I{} cp -L {} "$out/lib/"
cp /usr/share/datasets/fashion-mnist/*.gz "$out/data/"
echo "trainers: build/bin/sbpc MODEL.mlir --target=cuda -o $out/trainers/NAME.so"
du -sh "$out"
