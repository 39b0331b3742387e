#!/usr/bin/env bash
# Installs, builds, and runs every test (GoogleTest units, lit suites, docs check).
# Tests that need a GPU are marked `cuda` and skipped where there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j2
