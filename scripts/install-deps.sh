#!/usr/bin/env bash
# Installs what sbpc needs to build, test and train on Debian 12 (bookworm):
# LLVM/MLIR 19, the C++ libraries, OpenBLAS, the Fashion-MNIST dataset, and
# clang 19 with libFuzzer and its OpenMP for the fuzz targets (scripts/fuzz.sh),
# and matplotlib for scripts/sbp-plot.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build python3 \
  libmlir-19-dev mlir-19-tools llvm-19-dev llvm-19-tools libzstd-dev zlib1g-dev \
  libfmt-dev libboost-program-options-dev libgtest-dev libgmock-dev \
  libopenblas-dev \
  clang-19 libclang-rt-19-dev libomp-19-dev \
  dataset-fashion-mnist python3-matplotlib >/dev/null
