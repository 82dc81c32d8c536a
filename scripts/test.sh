#!/usr/bin/env bash
# Builds and runs every test: the Release build with all unit, oracle and
# fuzz-corpus tests, then an AddressSanitizer+UBSan build (clang) of the
# parsers and tokenizer with bounded libFuzzer runs. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
jobs="$(nproc)"
"$here/scripts/setup-deps.sh"
"$here/scripts/setup-oracles.sh"
export GEMMA4_REQUIRE_ORACLES=1   # a missing oracle is a failure, never a skip

echo "=== Release build and tests"
"$here/scripts/build.sh"
(cd "$here/build" && ctest --output-on-failure -j"$jobs" --timeout 900)

# Everything but the node-driven oracle runs again under the sanitizers, with
# the libFuzzer targets fuzzing the GGUF and safetensors parsers for a bounded time.
echo "=== AddressSanitizer + UBSan build: all unit tests, parsers fuzzed"
asan="$here/build-asan"
CC=clang CXX=clang++ cmake -S "$here" -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGEMMA4_SANITIZE=ON -DGEMMA4_FUZZ=ON >/dev/null
ninja -C "$asan" -j"$jobs"
(cd "$asan" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" --timeout 900 -LE oracle)
