#!/usr/bin/env bash
# Installs, builds, and runs every test (GoogleTest units, lit suites, docs check),
# then the fuzz targets briefly: their regression inputs, then FUZZ_SECONDS
# (20) each from the seed corpora (scripts/fuzz.sh, a clang build in build-fuzz).
# Tests that need a GPU are marked `cuda` and skipped where there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j2
scripts/fuzz.sh ci "${FUZZ_SECONDS:-20}"
