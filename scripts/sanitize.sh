#!/usr/bin/env bash
# Builds the compiler, the runtime and their tests with AddressSanitizer and
# UndefinedBehaviorSanitizer (gcc, like the product build) in ./build-asan and
# runs the CPU test suite (ctest without the `cuda` label): every lit test,
# so sbpc and sbp-train run sanitized on the samples, errors and numerics.
#
#   scripts/sanitize.sh            build and test
#   scripts/sanitize.sh CTEST_ARGS extra ctest arguments (e.g. -R lit)
#
# Takes long (a second full build, sanitized tests run 2-5x slower): not in CI;
# docs/testing.md records the last run. A report fails the test it came from.
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBP_ENABLE_CUDA_RUNTIME=OFF \
  -DCMAKE_C_FLAGS="$SAN" -DCMAKE_CXX_FLAGS="$SAN" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan
# Trainers that sbpc builds during the tests link the sanitized kernel library.
# Leak checking stays on; halt on the first UBSan report, with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan --output-on-failure -j2 -LE cuda "$@"
